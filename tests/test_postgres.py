"""The Postgres endpoint with real clients: psycopg, SQLAlchemy's inspector, pandas, psql.

The endpoint runs over the course data on the same service as GraphQL and Flight SQL (the
`served` fixture). Answers are checked against the warm engine; errors by their SQLSTATE;
after every refusal the same connection keeps answering.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as adbc_postgresql
import asyncpg
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa
import sqlglot
from pygwire import FrontendConnection
from pygwire import messages as wire

from conftest import TOKEN, Served, information_schema_listing
from greenery.semantic.layer import SemanticLayer
from greenery.serve import postgres
from greenery.serve.postgres import PostgresServer
from greenery.serve.postgres_catalog import DEFAULT_SETTINGS, PgError, PostgresCatalog, SessionFacts
from greenery.serve.postgres_copy import copy_lines, copy_request
from greenery.serve.postgres_values import encode_rows
from greenery.serve.service import SemanticLayerService, ServerConfigError

FUNNEL = ["sessions_with_page_view", "sessions_with_add_to_cart", "sessions_with_checkout"]


@pytest.fixture
def pg(served: Served) -> Iterator[psycopg.Connection]:
    """psycopg 3 with the token as password, any user and database name, autocommit."""
    with psycopg.connect(
        host="127.0.0.1", port=served.pg_port, user="analyst", password=TOKEN, dbname="any", autocommit=True
    ) as connection:
        yield connection


@pytest.fixture(scope="module")
def engine(served: Served) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"postgresql+psycopg://bi:{TOKEN}@127.0.0.1:{served.pg_port}/greenery")
    yield engine
    engine.dispose()


def _sqlstate(connection: psycopg.Connection, sql: str) -> str | None:
    with pytest.raises(psycopg.Error) as caught:
        connection.execute(sql)
    return caught.value.sqlstate


# ---- answers through plain SQL ------------------------------------------------------------


def test_the_funnel_through_plain_sql(pg: psycopg.Connection, course_sl: SemanticLayer) -> None:
    row = pg.execute(f"select {', '.join(FUNNEL)} from semantic_layer.funnel_overall").fetchone()
    expected = course_sl.query(metrics=FUNNEL).table.to_pylist()[0]
    assert row is not None and [int(v) for v in row] == [int(expected[m]) for m in FUNNEL]
    assert [int(v) for v in row] == [578, 467, 361]


def test_inventory_changes_from_week_3_to_4(pg: psycopg.Connection, course_sl: SemanticLayer) -> None:
    rows = pg.execute(
        "select product__product_name, net_inventory_change, restocks "
        "from semantic_layer.inventory_changes_by_product_by_week "
        "where metric_time__week = '2021-03-01' order by 1"
    ).fetchall()
    expected = course_sl.query(
        saved_query="inventory_changes_by_product_by_week",
        where=["{{ TimeDimension('metric_time', 'week') }} = '2021-03-01'"],
        order_by=["product__product_name"],
    ).table.to_pylist()
    assert [(n, int(c), int(r)) for n, c, r in rows] == [
        (e["product__product_name"], int(e["net_inventory_change"]), int(e["restocks"])) for e in expected
    ]
    assert dict((n, int(c)) for n, c, _ in rows)["Pothos"] == 20


def test_bind_parameters_are_literals(pg: psycopg.Connection, course_sl: SemanticLayer) -> None:
    """The extended query protocol: $1 becomes a literal, so a quote in it is data, not SQL."""
    sql = (
        "select metric_time__week, view_to_checkout_rate from semantic_layer.sessions "
        "where metric_time__week >= %s group by 1 order by 1"
    )
    rows = pg.execute(sql, ["2021-02-08"]).fetchall()
    expected = course_sl.query(
        metrics=["view_to_checkout_rate"],
        group_by=["metric_time__week"],
        where=["{{ TimeDimension('metric_time', 'week') }} >= '2021-02-08'"],
        order_by=["metric_time__week"],
    ).table
    assert [r[0] for r in rows] == expected["metric_time__week"].to_pylist()
    assert [r[1] for r in rows] == pytest.approx(expected["view_to_checkout_rate"].to_pylist())
    hostile = pg.execute(
        "select user__state, sessions from semantic_layer.sessions where user__state = %s", ["x' or 'a'='a"]
    ).fetchall()
    assert hostile == []


def test_measure_around_a_metric_and_the_dbt_template(
    pg: psycopg.Connection, course_sl: SemanticLayer
) -> None:
    by_state = course_sl.query(metrics=["sessions"], group_by=["user__state"]).table
    expected = dict(zip(by_state["user__state"].to_pylist(), by_state["sessions"].to_pylist(), strict=True))
    measured = pg.execute(
        "select user__state, MEASURE(sessions) from semantic_layer.sessions group by 1"
    ).fetchall()
    templated = pg.execute(
        "select * from {{ semantic_layer.query(metrics=['sessions'], group_by=['user__state']) }}"
    ).fetchall()
    bare = pg.execute("{{ semantic_layer.query(metrics=['sessions'], group_by=['user__state']) }}").fetchall()
    assert sorted(bare) == sorted(templated)
    assert {s: int(n) for s, n in measured} == {s: int(n) for s, n in expected.items()}
    assert {s: int(n) for s, n in templated} == {s: int(n) for s, n in expected.items()}


def test_types_reach_the_client(pg: psycopg.Connection) -> None:
    cursor = pg.execute(
        "select metric_time__week, sessions_with_checkout, view_to_checkout_rate "
        "from semantic_layer.funnel_by_week order by 1 limit 1"
    )
    week, checkouts, rate = cursor.fetchone() or ()
    assert week.isoformat() == "2021-02-08T00:00:00"
    assert isinstance(checkouts, Decimal | int) and isinstance(rate, float)
    assert [d.type_code for d in cursor.description or []] == [1114, 1700, 701]


# ---- the session: what a real Postgres answers ------------------------------------------------


def test_catalog_functions_and_session_commands(pg: psycopg.Connection) -> None:
    version, schema, database, user = (
        pg.execute("select version(), current_schema(), current_database(), current_user").fetchone() or ()
    )
    assert version.startswith("PostgreSQL 15.") and schema == "semantic_layer"
    assert (database, user) == ("any", "analyst")
    pg.execute("SET application_name TO 'chart builder'")
    assert pg.execute("show application_name").fetchone() == ("chart builder",)
    assert pg.info.parameter_status("application_name") == "chart builder"
    assert pg.execute("SHOW TRANSACTION ISOLATION LEVEL").fetchone() == ("read committed",)
    assert pg.execute("select current_setting('standard_conforming_strings')").fetchone() == ("on",)
    assert _sqlstate(pg, "show no_such_setting") == "42704"
    assert pg.execute("select current_schemas(true), current_schemas(false)").fetchone() == (
        ["pg_catalog", "semantic_layer", "public"],
        ["semantic_layer", "public"],
    )
    pg.execute("set search_path = public")
    assert pg.execute("select current_schemas(true)").fetchone() == (["pg_catalog", "public"],)


def test_the_clock_and_casts_named_as_postgresql_names_them(pg: psycopg.Connection) -> None:
    """select now() or current_date, which clients send to read the server's clock, ran into
    DuckDB reading the keyword as the column named after it. A cast's column is named by what
    it casts, or by its type's internal name; a call by its Postgres name, an operator ?column?
    (each name as PostgreSQL 15 answers)."""
    cursor = pg.execute(
        "select current_date, current_timestamp(3) as p, localtimestamp, statement_timestamp(), "
        "1::bigint, 'a'::char(2), 'pg_class'::regclass::oid, (1 + 2)::text, relname::text::varchar, "
        "current_date::text from pg_class limit 1"
    )
    row = cursor.fetchone() or ()
    assert [c.name for c in cursor.description] == [
        "current_date", "p", "localtimestamp", "statement_timestamp",
        "int8", "bpchar", "oid", "text", "relname", "current_date",
    ]  # fmt: skip
    today = dt.datetime.now(dt.UTC).date()  # the server's date may be a day either side of UTC's
    assert abs(row[0] - today) <= dt.timedelta(days=1) and abs(row[1] - row[3]) < dt.timedelta(seconds=1)
    assert (row[4], row[6], row[7], row[9]) == (1, 1259, "3", row[0].isoformat())
    calls = pg.execute(
        "select to_char(now(), 'YYYY'), date_trunc('day', now()), array[1, 2], case when true then 1 end, "
        "true or false, 2 ^ 3, now() at time zone 'UTC', position('b' in 'abc'), trim(' a '), version(), "
        "pg_catalog.set_config('application_name', 'x', false), generate_series(1, 1)"
    )
    assert [c.name for c in calls.description] == [  # sqlglot's own names were group_concat, time_to_str…
        "to_char", "date_trunc", "array", "case", "?column?", "?column?",
        "timezone", "position", "btrim", "version", "set_config", "generate_series",
    ]  # fmt: skip
    aggregated = pg.execute("select string_agg(x, ',') from (values ('a'), ('b')) t(x)")
    assert (aggregated.description[0].name, aggregated.fetchone()) == ("string_agg", ("a,b",))
    (sessions,) = pg.execute("select sessions from semantic_layer.sessions").fetchone() or (None,)
    beside = pg.execute("select current_date, sessions from semantic_layer.sessions").fetchone()
    assert beside == (row[0], sessions)  # around the semantic layer's answers too


INTERVALS = (
    "select interval '2 days' as a, interval '1 year 2 months 3 days 04:05:06.5' as b, "
    "-interval '1 year 2 months 3 days 04:05:06.5' as c, interval '0' as d, interval '-0.5 seconds' as e"
)


def test_intervals_reach_the_client_as_postgresql_sends_them(pg: psycopg.Connection, served: Served) -> None:
    """In text ('1 year 2 mons 3 days 04:05:06.5') and in binary, read by psycopg and asyncpg as
    from PostgreSQL 15 (a year 365 days, a month 30); DuckDB's interval reached psycopg as
    'MonthDayNano(…)', which it could not read."""
    day = dt.timedelta(days=1)
    expected = (2 * day, dt.timedelta(days=428, seconds=14706.5), -dt.timedelta(days=428, seconds=14706.5))
    expected += (dt.timedelta(0), -dt.timedelta(seconds=0.5))
    assert pg.execute(INTERVALS).fetchone() == expected
    assert pg.cursor(binary=True).execute(INTERVALS).fetchone() == expected

    async def read() -> tuple[object, ...]:
        connection = await asyncpg.connect(host="127.0.0.1", port=served.pg_port, user="u", password=TOKEN)
        try:
            return tuple(await connection.fetchrow(INTERVALS))
        finally:
            await connection.close()

    assert asyncio.run(read()) == expected


def test_interval_literals_read_as_postgresql_reads_them(
    pg: psycopg.Connection, course_sl: SemanticLayer
) -> None:
    """``interval '1 day 02:00'`` is a day and two hours and ``'1 day ago'`` minus a day, named
    ``interval``, as PostgreSQL 15 on this machine answered; sqlglot alone reads only the first
    part (one day, plus one day), in a filter on the semantic layer too."""
    literals = "select interval '1 day 02:00', interval '1 day ago', interval '2 hours', interval '1' day"
    day, hour = dt.timedelta(days=1), dt.timedelta(hours=1)
    for cursor in (pg.cursor(), psycopg.ClientCursor(pg)):  # the extended and the simple protocol
        cursor.execute(literals)
        assert cursor.fetchone() == (day + 2 * hour, -day, 2 * hour, day)
        assert [d.name for d in cursor.description or []] == ["interval"] * 4
    rows = pg.execute(
        "select metric_time__day, orders from semantic_layer.orders "
        "where metric_time__day > date '2021-02-12' + interval '6 days ago' order by 1"
    ).fetchall()
    expected = course_sl.query(
        metrics=["orders"],
        group_by=["metric_time__day"],
        where=["{{ TimeDimension('metric_time', 'day') }} > '2021-02-06'"],
        order_by=["metric_time__day"],
    ).table.to_pylist()
    assert [(d.date(), int(n)) for d, n in rows] == [
        (e["metric_time__day"].date(), e["orders"]) for e in expected
    ]
    assert rows


def test_an_error_in_a_transaction_lasts_until_rollback(served: Served) -> None:
    with psycopg.connect(host="127.0.0.1", port=served.pg_port, user="u", password=TOKEN) as connection:
        assert connection.execute("select 1").fetchone() == (1,)  # psycopg opened a transaction
        assert _sqlstate(connection, "select nothing from semantic_layer.sessions") == "42703"
        assert _sqlstate(connection, "select 1") == "25P02"
        connection.rollback()
        assert connection.execute("select 2").fetchone() == (2,)


# ---- refusals: read-only, safe, and the connection keeps serving -------------------------------


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("create table semantic_layer.x (a int)", "25006"),
        ("drop table semantic_layer.sessions", "25006"),
        ("insert into semantic_layer.sessions values (1)", "25006"),
        ("copy semantic_layer.sessions from '/etc/passwd'", "25006"),
        ("copy (select 1) to '/tmp/x'", "42501"),
        ("select pg_read_file('/etc/passwd')", "42501"),
        ("select * from read_csv('/etc/passwd')", "42501"),
        ("select * from semantic_layer.no_such_table", "42P01"),
        ("select * from public.orders", "42P01"),
        ("select nope from semantic_layer.sessions", "42703"),
        ("select from where", "42601"),
        ("select " + "1 + " * 60_000 + "1", "54000"),
    ],
)
def test_refused_with_a_sqlstate_and_the_connection_keeps_serving(
    pg: psycopg.Connection, sql: str, sqlstate: str
) -> None:
    assert _sqlstate(pg, sql) == sqlstate
    row = pg.execute("select sessions_with_checkout from semantic_layer.funnel_overall").fetchone()
    assert row is not None and int(row[0]) == 361


def test_a_wrong_token_is_refused_with_28P01(served: Served) -> None:
    """Read the ErrorResponse itself (libpq does not expose a connection failure's SQLSTATE)."""
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=served.pg_port, user="u", password="not-the-token")
    client = FrontendConnection()
    with socket.create_connection(("127.0.0.1", served.pg_port), timeout=30) as sock:
        sock.sendall(client.send(wire.StartupMessage(params={"user": "u", "database": "d"})))
        received: list[wire.PGMessage] = []
        while not any(isinstance(m, wire.ErrorResponse) for m in received):
            data = sock.recv(4096)
            assert data, f"the server closed without an error after {received}"
            received += list(client.receive(data))
            if isinstance(received[-1], wire.AuthenticationSASL):
                sock.sendall(
                    client.send(
                        wire.SASLInitialResponse(mechanism="SCRAM-SHA-256", data=b"n,,n=,r=abcdefghijklmnop")
                    )
                )
            if isinstance(received[-1], wire.AuthenticationSASLContinue):
                proof = "c=biws,r=" + received[-1].data.decode().split(",")[0][2:] + ",p=" + "A" * 44
                sock.sendall(client.send(wire.SASLResponse(data=proof.encode())))
    error = next(m for m in received if isinstance(m, wire.ErrorResponse))
    assert error.code == "28P01" and not any(isinstance(m, wire.AuthenticationOk) for m in received)


def test_without_a_token_only_loopback(served: Served) -> None:
    with pytest.raises(ServerConfigError, match="without authentication"):
        PostgresServer(None, "0.0.0.0", 0, None)  # type: ignore[arg-type]
    with pytest.raises(ServerConfigError, match="token shorter than 32 characters"):
        PostgresServer(None, "0.0.0.0", 0, "short")  # type: ignore[arg-type]


def test_parameters_as_drivers_write_them(pg: psycopg.Connection, course_sl: SemanticLayer) -> None:
    """`$1,$2` with no space (JDBC's `?,?`, psycopg's `%s,%s`), and dates and timestamps in
    psycopg 3's binary format, as a real PostgreSQL takes them."""
    by_day = course_sl.query(metrics=["orders"], group_by=["metric_time__day"]).table.to_pylist()
    days = {r["metric_time__day"]: int(r["orders"]) for r in by_day}
    last = max(days)
    by_state = course_sl.query(metrics=["orders"], group_by=["user__state"]).table.to_pylist()
    states = {r["user__state"]: int(r["orders"]) for r in by_state}
    assert pg.execute("select %s,%s", ["Texas", "California"]).fetchall() == [("Texas", "California")]
    two = pg.execute(
        "select user__state, orders from semantic_layer.orders where user__state in (%s,%s) order by 1",
        ["Texas", "California"],
    ).fetchall()
    assert [(s, int(n)) for s, n in two] == [(s, states[s]) for s in ("California", "Texas")]
    around = "{{ semantic_layer.query(metrics=['orders'], group_by=['user__state']) }}"
    texas = pg.execute(f"select user__state, orders from {around} where user__state = %s", ["Texas"])
    assert [(s, int(n)) for s, n in texas.fetchall()] == [("Texas", states["Texas"])]
    since = "select metric_time__day, orders from semantic_layer.orders where metric_time__day >= %b"
    for bound in (last.date(), last, last.replace(tzinfo=dt.UTC)):
        assert [(d, int(n)) for d, n in pg.execute(since, [bound]).fetchall()] == [(last, days[last])]


def test_a_superset_time_range_filter(pg: psycopg.Connection, course_sl: SemanticLayer) -> None:
    """Superset's PostgreSQL time range, TO_TIMESTAMP('…', 'YYYY-MM-DD HH24:MI:SS.US'), is a
    constant: computed, it goes into MetricFlow's query, which was refused."""
    by_day = course_sl.query(metrics=["revenue"], group_by=["metric_time__day"]).table.to_pylist()
    last = max(r["metric_time__day"] for r in by_day)
    days = (last, last + dt.timedelta(days=1))
    start, end = (f"TO_TIMESTAMP('{d:%Y-%m-%d} 00:00:00.000000', 'YYYY-MM-DD HH24:MI:SS.US')" for d in days)
    rows = pg.execute(
        "SELECT DATE_TRUNC('week', metric_time__day) AS metric_time__day, SUM(revenue) AS revenue "
        f"FROM semantic_layer.orders WHERE metric_time__day >= {start} AND metric_time__day < {end} "
        "GROUP BY DATE_TRUNC('week', metric_time__day)"
    ).fetchall()
    week = last - dt.timedelta(days=last.weekday())
    assert rows == [(week, next(r["revenue"] for r in by_day if r["metric_time__day"] == last))]


def test_a_limit_keeps_postgres_ordering_of_nulls(pg: psycopg.Connection, course_sl: SemanticLayer) -> None:
    """DESC puts nulls first in PostgreSQL, last in MetricFlow's DuckDB: the limit stays outside."""
    answer = course_sl.query(metrics=["orders"], group_by=["order__shipping_service"]).table.to_pylist()
    services = [(r["order__shipping_service"], r["orders"]) for r in answer]
    assert any(s is None for s, _ in services)  # orders not shipped yet
    nulls_first = [r for r in services if r[0] is None] + sorted((r for r in services if r[0]), reverse=True)
    top = pg.execute(
        "select order__shipping_service, orders from semantic_layer.orders "
        "order by order__shipping_service desc limit 2"
    ).fetchall()
    assert top == nulls_first[:2]


def test_asyncpg_reads_metrics_and_binds_typed_parameters(served: Served, course_sl: SemanticLayer) -> None:
    """asyncpg reads every numeric in binary and encodes each parameter by the type the server
    describes: a cast's (``$1::timestamp``), int8 for LIMIT, text where nothing says."""
    by_day = course_sl.query(metrics=["orders"], group_by=["metric_time__day"]).table.to_pylist()
    last = max(r["metric_time__day"] for r in by_day)
    by_state = course_sl.query(metrics=["orders", "revenue"], group_by=["user__state"]).table.to_pylist()
    states = {r["user__state"]: (r["orders"], r["revenue"]) for r in by_state}
    in_state = "select user__state, orders, revenue from semantic_layer.orders where user__state = $1"

    async def ask() -> list[list[tuple[object, ...]]]:
        connection = await asyncpg.connect(
            host="127.0.0.1", port=served.pg_port, user="analyst", password=TOKEN, database="greenery"
        )
        try:
            return [
                [tuple(r) for r in await connection.fetch(sql, *parameters)]
                for sql, parameters in (
                    (in_state, ["Texas"]),
                    ("select user__state from semantic_layer.orders order by 1 limit $1", [2]),
                    (
                        "select metric_time__day, orders from semantic_layer.orders "
                        "where metric_time__day >= $1::timestamp",
                        [last],
                    ),
                    ("select 0.005::numeric, -12.5::numeric, 1e5::numeric", []),
                )
            ]
        finally:
            await connection.close()

    state, first_two, since, numbers = asyncio.run(ask())
    assert state == [("Texas", *states["Texas"])]
    assert [s for (s,) in first_two] == sorted(states)[:2]
    assert since == [(last, next(r["orders"] for r in by_day if r["metric_time__day"] == last))]
    assert numbers == [(Decimal("0.005"), Decimal("-12.5"), Decimal("100000"))]


def test_sqlalchemy_reflects_a_table_and_selects_from_it(engine: sa.Engine, course_sl: SemanticLayer) -> None:
    """A reflected Table (SQLAlchemy reads current_setting('default_table_access_method')), and
    Core's select on it, which names each column with its schema and table."""
    orders = sa.Table("orders", sa.MetaData(), schema="semantic_layer", autoload_with=engine)
    assert {"user__state", "revenue", "metric_time__week"} <= set(orders.columns.keys())
    query = (
        sa.select(orders.c.user__state, sa.func.sum(orders.c.revenue).label("revenue"))
        .group_by(orders.c.user__state)
        .order_by(sa.desc("revenue"))
        .limit(3)
    )
    with engine.connect() as connection:
        top = connection.execute(query).fetchall()
    expected = course_sl.query(
        metrics=["revenue"], group_by=["user__state"], order_by=["-revenue"], limit=3
    ).table.to_pylist()
    assert [(s, float(r)) for s, r in top] == [(e["user__state"], float(e["revenue"])) for e in expected]


# ---- SQLAlchemy, pandas, psql -----------------------------------------------------------------


def test_sqlalchemy_inspector_lists_tables_and_columns(engine: sa.Engine, course_sl: SemanticLayer) -> None:
    inspector = sa.inspect(engine)
    assert "semantic_layer" in inspector.get_schema_names()
    tables = inspector.get_table_names(schema="semantic_layer")
    assert set(course_sl.saved_query_names) <= set(tables)
    assert {"sessions", "orders", "product_sessions"} <= set(tables)
    assert inspector.get_table_names() == tables  # the search path's first schema, nothing else visible
    columns = {c["name"]: c["type"] for c in inspector.get_columns("funnel_by_week", schema="semantic_layer")}
    assert isinstance(columns["metric_time__week"], sa.TIMESTAMP)
    assert isinstance(columns["view_to_checkout_rate"], sa.Float)
    assert inspector.get_pk_constraint("sessions", schema="semantic_layer")["constrained_columns"] == []
    comment = inspector.get_table_comment("sessions", schema="semantic_layer")["text"]
    assert comment and "sessions" in comment


def test_pandas_read_sql(engine: sa.Engine, course_sl: SemanticLayer) -> None:
    with engine.connect() as connection:
        overall = pd.read_sql(f"select {', '.join(FUNNEL)} from semantic_layer.funnel_overall", connection)
        weekly = pd.read_sql(
            sa.text(
                "select metric_time__week, view_to_checkout_rate from semantic_layer.funnel_by_week "
                "where metric_time__week >= :week order by 1"
            ),
            connection,
            params={"week": "2021-02-08"},
        )
    with engine.connect().execution_options(stream_results=True) as connection:  # a named cursor
        chunks = list(pd.read_sql(BY_STATE, connection, chunksize=10))
    assert [len(c) for c in chunks[:-1]] == [10] * (len(chunks) - 1)
    streamed = pd.concat(chunks)
    assert list(zip(streamed["user__state"], streamed["orders"].astype(int), strict=True)) == (
        _orders_by_state(course_sl)
    )
    assert overall.astype(int).to_dict("records") == [dict(zip(FUNNEL, [578, 467, 361], strict=True))]
    expected = course_sl.query(
        metrics=["view_to_checkout_rate"],
        group_by=["metric_time__week"],
        where=["{{ TimeDimension('metric_time', 'week') }} >= '2021-02-08'"],
    ).table.to_pandas()
    assert weekly["view_to_checkout_rate"].tolist() == pytest.approx(
        expected["view_to_checkout_rate"].tolist()
    )


PSQL = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"


@pytest.mark.skipif(not os.path.exists(PSQL), reason="psql is not installed")
def test_psql_lists_and_describes(served: Served, course_sl: SemanticLayer) -> None:
    def psql(*commands: str) -> str:
        done = subprocess.run(
            [
                PSQL,
                "-h",
                "127.0.0.1",
                "-p",
                str(served.pg_port),
                "-U",
                "someone",
                "-d",
                "greenery",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                *(arg for command in commands for arg in ("-c", command)),
            ],
            env={**os.environ, "PGPASSWORD": TOKEN, "PGCONNECT_TIMEOUT": "30"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed = psql(r"\dt semantic_layer.*")
    assert all(f" {name} " in listed for name in [*course_sl.saved_query_names, "sessions", "orders"])
    described = psql(r"\d semantic_layer.sessions")
    assert 'Table "semantic_layer.sessions"' in described
    assert "view_to_checkout_rate" in described and "double precision" in described
    assert "metric_time__week" in described and "timestamp without time zone" in described
    detailed = psql(r"\d+ semantic_layer.sessions")  # psql's pg_catalog.unnest, the columns' storage
    assert "view_to_checkout_rate" in detailed and "| plain " in detailed
    assert "| greenery " in psql(r"\l+") and "pg_default" in psql(r"\db+")
    # psql's other listings, each a catalog query of its own (pg_catalog.current_database() in
    # \dRs; pg_statistics_obj_is_visible, pg_char_to_encoding): all run
    listings = r"\dn \du \df \dv \di \dT \dx \dX \dO \dc \dC \do \dF \dRp \dRs \dE \dm \ds \dD \dp \dy"
    listed = psql(*listings.split())  # ON_ERROR_STOP: the last is there only if every one ran
    assert "List of subscriptions" in listed and listed.rstrip().endswith("(0 rows)")
    assert "List of event triggers" in listed
    settings = psql("set search_path = semantic_layer", r"\dconfig *")  # current_setting(s.name)
    assert re.search(r"^ search_path +\| semantic_layer$", settings, re.MULTILINE), settings

    funnel = "select metric_time__week, sessions_with_page_view from semantic_layer.funnel_by_week order by 1"
    exported = Path(tempfile.mkdtemp()) / "funnel.csv"
    assert psql(rf"\copy ({funnel}) to '{exported}' with csv header").strip() == "COPY 1"
    weeks = course_sl.query(metrics=["sessions_with_page_view"], group_by=["metric_time__week"]).table
    assert exported.read_text().splitlines() == [
        "metric_time__week,sessions_with_page_view",
        *(f"{w:%Y-%m-%d %H:%M:%S},{n}" for w, n in zip(*weeks.to_pydict().values(), strict=True)),
    ]


def test_a_client_that_does_not_authenticate_in_time_is_closed(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "STARTUP_TIMEOUT_S", 0.5)
    client = FrontendConnection()
    with socket.create_connection(("127.0.0.1", served.pg_port), timeout=10) as sock:
        sock.sendall(client.send(wire.StartupMessage(params={"user": "u", "database": "d"})))
        received: list[wire.PGMessage] = []
        while data := sock.recv(4096):  # the SASL challenge, never answered, then the end
            received += list(client.receive(data))
    errors = [m for m in received if isinstance(m, wire.ErrorResponse)]
    assert errors and errors[-1].code == "08P01"
    assert "not authenticated within 0.5 s" in errors[-1].message
    with socket.create_connection(("127.0.0.1", served.pg_port), timeout=10) as silent:
        start = time.monotonic()
        while silent.recv(4096):  # a client that never sends its startup message is closed too
            pass
        assert time.monotonic() - start < 5


def test_sockets_past_the_cap_are_closed_at_once(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "MAX_SOCKETS", 3)
    held = [socket.create_connection(("127.0.0.1", served.pg_port), timeout=10) for _ in range(3)]
    try:
        with socket.create_connection(("127.0.0.1", served.pg_port), timeout=10) as extra:
            assert extra.recv(4096) == b""  # closed before any thread served it
    finally:
        for sock in held:
            sock.close()
        monkeypatch.undo()
    with psycopg.connect(host="127.0.0.1", port=served.pg_port, user="u", password=TOKEN) as connection:
        assert connection.execute("select 1").fetchone() == (1,)


def test_a_catalog_closed_under_a_running_query(course_copy: Path) -> None:
    """Replaced by a newer version, the catalog lets its running query finish and closes after
    it; at shutdown it stops the query (57P01). DuckDB refused to close it under a query
    ('connection is busy'), which failed the server's shutdown."""
    service = SemanticLayerService(course_copy)
    with service.layers.use() as layer:
        tables = layer.tables
    facts = SessionFacts("analyst", "greenery", dict(DEFAULT_SETTINGS), 1)
    cross = "select count(*) from {relations}"

    def run_while_closing(relations: int, *, interrupt: bool) -> list[object]:
        catalog = PostgresCatalog(tables)
        outcome: list[object] = []

        def run() -> None:
            try:
                joined = ", ".join(f"pg_catalog.pg_attribute a{n}" for n in range(relations))
                outcome.append(catalog.run(sqlglot.parse_one(cross.format(relations=joined)), facts).num_rows)
            except PgError as error:
                outcome.append(error.sqlstate)

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.3)
        catalog.close(interrupt=interrupt)
        thread.join(60)
        with pytest.raises(PgError, match="replaced by a newer published version"):
            catalog.run(sqlglot.parse_one("select 1"), facts)
        return outcome

    try:
        assert run_while_closing(4, interrupt=False) == [1]  # about a second of work, finished
        assert run_while_closing(6, interrupt=True) == ["57P01"]  # hours of work, stopped
    finally:
        service.close()


# ---- cursors: an answer read in pieces ------------------------------------------------------

BY_STATE = "select user__state, orders from semantic_layer.orders order by 1"


def _orders_by_state(course_sl: SemanticLayer) -> list[tuple[str, int]]:
    rows = course_sl.query(metrics=["orders"], group_by=["user__state"]).table.to_pylist()
    return sorted((r["user__state"], r["orders"]) for r in rows)


def _ints(rows: list[tuple[Any, ...]]) -> list[tuple[Any, int]]:
    return [(state, int(orders)) for state, orders in rows]


def test_psycopg_named_cursors_read_an_answer_in_pieces(served: Served, course_sl: SemanticLayer) -> None:
    """A named (server-side) cursor: DECLARE over the extended protocol with a bound parameter,
    Describe of the cursor's portal, FETCH FORWARD n, MOVE to scroll; WITH HOLD outside a
    transaction, with binary rows; without WITH HOLD, refused there as Postgres refuses it."""
    expected = [(state, orders) for state, orders in _orders_by_state(course_sl) if orders > 10]
    connect = {"host": "127.0.0.1", "port": served.pg_port, "user": "u", "password": TOKEN}
    with psycopg.connect(**connect) as connection:  # psycopg's default: statements in a transaction
        with connection.cursor(name="states", scrollable=True) as cursor:
            cursor.execute(
                "select user__state, orders from semantic_layer.orders where orders > %s order by 1", [10]
            )
            assert [c.name for c in cursor.description or []] == ["user__state", "orders"]
            first, one, rest = cursor.fetchmany(3), cursor.fetchone(), cursor.fetchall()
            assert one is not None and _ints([*first, one, *rest]) == expected
            cursor.scroll(1, "absolute")
            again = cursor.fetchone()
            cursor.scroll(-2)
            assert again is not None and _ints([again, *cursor.fetchmany(2)]) == [expected[1], *expected[:2]]
        connection.commit()
    with psycopg.connect(**connect, autocommit=True) as connection:
        with connection.cursor(name="held", withhold=True, binary=True) as cursor:
            cursor.itersize = 7
            cursor.execute(BY_STATE)
            assert _ints(list(cursor)) == _orders_by_state(course_sl)
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction), connection.cursor(name="loose") as cursor:
            cursor.execute(BY_STATE)


def test_sql_cursors_move_as_in_postgres(pg: psycopg.Connection, course_sl: SemanticLayer) -> None:
    """DECLARE … WITH HOLD and FETCH in one simple query, as psqlODBC sends them (Tableau's
    PostgreSQL connector reads that way), then every FETCH direction. The expected rows are
    what PostgreSQL 15 on this machine answered to the same statements over a five-row
    ``generate_series``; the errors are its SQLSTATEs."""
    r = _orders_by_state(course_sl)[:5]
    cursor = psycopg.ClientCursor(pg)  # the simple query protocol, as psql and psqlODBC
    cursor.execute(f'declare "SQL_CUR1" cursor with hold for {BY_STATE} limit 5; fetch 2 in "SQL_CUR1"')
    assert cursor.statusmessage == "DECLARE CURSOR" and cursor.nextset()
    assert _ints(cursor.fetchall()) == r[:2]

    def fetch(statement: str) -> tuple[str | None, list[tuple[Any, int]]]:
        cursor.execute(statement)
        return cursor.statusmessage, _ints(cursor.fetchall()) if cursor.description else []

    assert fetch('fetch next in "SQL_CUR1"') == ("FETCH 1", [r[2]])
    assert fetch('fetch prior from "SQL_CUR1"') == ("FETCH 1", [r[1]])
    assert fetch('fetch all "SQL_CUR1"') == ("FETCH 3", r[2:])
    assert fetch('fetch backward 2 from "SQL_CUR1"') == ("FETCH 2", [r[4], r[3]])
    assert fetch('move absolute 0 in "SQL_CUR1"') == ("MOVE 0", [])
    assert fetch('fetch absolute -1 from "SQL_CUR1"') == ("FETCH 1", [r[4]])
    assert fetch('fetch relative 0 from "SQL_CUR1"') == ("FETCH 1", [r[4]])
    assert fetch('fetch forward 0 from "SQL_CUR1"') == ("FETCH 1", [r[4]])
    assert fetch('move 10 in "SQL_CUR1"') == ("MOVE 0", [])
    assert fetch('fetch "SQL_CUR1"') == ("FETCH 0", [])
    assert fetch('close "SQL_CUR1"') == ("CLOSE CURSOR", [])
    assert _sqlstate(pg, 'fetch 1 from "SQL_CUR1"') == "34000"

    assert _sqlstate(pg, f"declare c cursor for {BY_STATE}") == "25P01"  # outside a transaction
    cursor.execute("begin")
    cursor.execute(f"declare c no scroll cursor for {BY_STATE} limit 5; fetch absolute 3 from c")
    assert cursor.nextset() and _ints(cursor.fetchall()) == [r[2]]
    assert fetch("fetch relative 5 from c") == ("FETCH 0", [])
    assert _sqlstate(pg, "fetch relative -1 from c") == "55000"  # NO SCROLL: only forward
    cursor.execute("rollback")
    cursor.execute("begin")
    cursor.execute(f"declare c cursor for {BY_STATE}")
    assert _sqlstate(pg, f"declare c cursor for {BY_STATE}") == "42P03"
    cursor.execute("rollback")

    cursor.execute("begin")
    cursor.execute(f"declare c cursor for {BY_STATE}; declare h cursor with hold for {BY_STATE}")
    cursor.execute("commit")  # closes the cursor declared without WITH HOLD
    assert _sqlstate(pg, "fetch 1 from c") == "34000"
    assert fetch("fetch 1 from h") == ("FETCH 1", r[:1])
    assert fetch("close all") == ("CLOSE CURSOR ALL", [])
    assert _sqlstate(pg, "fetch 1 from h") == "34000"
    assert _sqlstate(pg, "declare f cursor with hold for insert into x values (1)") == "42601"
    assert pg.execute("select 1").fetchone() == (1,)


# ---- arrays: a list bound to one parameter ---------------------------------------------------


def test_a_list_parameter_as_psycopg_sends_it(pg: psycopg.Connection, course_sl: SemanticLayer) -> None:
    """``x = any(%s)`` with a Python list, the way to filter on several values in psycopg: its
    text array (``{Texas,Ohio}``) or binary array becomes an ARRAY literal; dates stay dates."""
    states = dict(_orders_by_state(course_sl))
    by_day = course_sl.query(metrics=["orders"], group_by=["metric_time__day"]).table.to_pylist()
    days = {r["metric_time__day"]: r["orders"] for r in by_day}
    two_days = sorted(days)[:2]
    in_states = (
        "select user__state, orders from semantic_layer.orders where user__state = any(%{}) order by 1"
    )
    on_days = (
        "select metric_time__day, orders from semantic_layer.orders "
        "where metric_time__day = any(%{}) order by 1"
    )
    for placeholder in "sb":  # text, then binary
        rows = pg.execute(in_states.format(placeholder), [["Texas", "Ohio", 'a "quoted", name']]).fetchall()
        assert _ints(rows) == [("Ohio", states["Ohio"]), ("Texas", states["Texas"])]
        rows = pg.execute(on_days.format(placeholder), [[d.date() for d in two_days]]).fetchall()
        assert _ints(rows) == [(d, days[d]) for d in two_days]
    others = pg.execute(
        "select user__state, orders from semantic_layer.orders where user__state <> all(%s) order by 1",
        [["Ohio"]],
    ).fetchall()
    assert _ints(others) == [(state, n) for state, n in states.items() if state != "Ohio"]


def test_an_array_written_as_a_string(pg: psycopg.Connection, course_sl: SemanticLayer) -> None:
    """``= any('{Texas,Ohio}')`` or ``'{1,2}'::int[]``: PostgreSQL reads the string as an array
    literal, on the semantic layer as on its catalog; a malformed one is 22P02, as PostgreSQL 15
    answers."""
    states = dict(_orders_by_state(course_sl))
    rows = pg.execute(
        "select user__state, orders from semantic_layer.orders "
        """where user__state = any('{Texas,"Ohio"}') order by 1"""
    ).fetchall()
    assert _ints(rows) == [("Ohio", states["Ohio"]), ("Texas", states["Texas"])]
    others = pg.execute(
        "select user__state from semantic_layer.orders where user__state <> all(('{Ohio}')) order by 1"
    ).fetchall()
    assert [state for (state,) in others] == [state for state in states if state != "Ohio"]
    tables = pg.execute(
        "select relname from pg_catalog.pg_class where relname = any('{orders,sessions}') order by 1"
    ).fetchall()
    assert tables == [("orders",), ("sessions",)]
    with pytest.raises(
        psycopg.errors.InvalidTextRepresentation, match=re.escape('malformed array literal: "{a,b"')
    ):
        pg.execute("select 1 where 'a' = any('{a,b')")
    cast = "select '{1,2}'::int[], '{a,\"b c\"}'::text[], '{2021-01-01}'::date[], 2 = any('{1,2}'::int[])"
    assert pg.execute(cast).fetchone() == ([1, 2], ["a", "b c"], [dt.date(2021, 1, 1)], True)
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match='for type integer: "x"'):
        pg.execute("select '{1,x}'::int[]")


def test_asyncpg_binds_lists_and_looks_up_array_types(served: Served, course_sl: SemanticLayer) -> None:
    """asyncpg encodes a list by the array type described: text[] for ``= any($1)``, a cast's
    array type otherwise, which it first looks up in pg_type with its own introspection query
    (``$1::oid[]``, oid and oid[] columns, binary) after ``set_config('jit', 'off', false)``."""
    states = dict(_orders_by_state(course_sl))

    async def ask() -> list[list[tuple[object, ...]]]:
        connection = await asyncpg.connect(host="127.0.0.1", port=served.pg_port, user="u", password=TOKEN)
        try:
            return [
                [tuple(r) for r in await connection.fetch(sql, parameter)]
                for sql, parameter in (
                    (
                        "select user__state from semantic_layer.orders where user__state = any($1)",
                        ["Texas", None],
                    ),
                    (
                        "select user__state, orders from semantic_layer.orders where orders = any($1::int[])",
                        [3],
                    ),
                    ("select set_config('statement_timeout', $1, false) as value", "2s"),
                )
            ]
        finally:
            await connection.close()

    texas, three, timeout = asyncio.run(ask())
    assert texas == [("Texas",)]
    assert sorted(_ints(three)) == sorted((s, n) for s, n in states.items() if n == 3)
    assert timeout == [("2s",)]


def test_catalog_oids_are_described_as_oid(pg: psycopg.Connection) -> None:
    """An oid column reads as type oid, and an array of them as oid[], as in PostgreSQL."""
    cursor = pg.execute("select oid, array[oid] as oids from pg_catalog.pg_class limit 1")
    assert [d.type_code for d in cursor.description or []] == [26, 1028]
    assert _sqlstate(pg, "select set_config('statement_timeout', 'soon', false)") == "22023"


# ---- COPY … TO STDOUT: an answer as CSV or text lines ------------------------------------------


def test_copy_to_stdout_as_psycopg_reads_it(pg: psycopg.Connection, course_sl: SemanticLayer) -> None:
    """psycopg's cursor.copy(): CSV with a header (a bound parameter in the query), the text
    format row by row; COPY FROM, to a file, and binary are refused with Postgres's SQLSTATEs."""
    states = _orders_by_state(course_sl)
    cursor = pg.cursor()
    query = "select user__state, orders from semantic_layer.orders where orders > %s order by 1"
    with cursor.copy(f"copy ({query}) to stdout (format csv, header)", [50]) as copy:
        lines = b"".join(bytes(block) for block in copy).decode().splitlines()
    assert cursor.rowcount == len(lines) - 1
    assert lines == ["user__state,orders", *(f"{s},{n}" for s, n in states if n > 50)]
    with cursor.copy(
        "copy (select user__state, orders from semantic_layer.orders order by 1) to stdout"
    ) as copy:
        assert [(s, int(n)) for s, n in copy.rows()] == states
    assert _sqlstate(pg, "copy semantic_layer.orders from stdin") == "25006"
    assert _sqlstate(pg, "copy (select 1) to '/tmp/answer.csv'") == "42501"
    assert _sqlstate(pg, "copy (select 1 as one) to stdout with (format binary, header)") == "0A000"
    assert pg.execute("select 1").fetchone() == (1,)


def test_binary_copy_as_postgresql_writes_it(pg: psycopg.Connection) -> None:
    """COPY … (FORMAT binary): the bytes PostgreSQL 15 on this machine wrote for the same row, and
    through psycopg's binary reader the values the text protocol sends, of every type a catalog
    query or an answer has (the older form, WITH BINARY, for the answer)."""
    cursor = pg.cursor()
    row = "select 1::int as a, 'a'::text as b, null::int as c"
    with cursor.copy(f"copy ({row}) to stdout (format binary)") as copy:
        written = b"".join(bytes(block) for block in copy)
    assert written == (
        b"PGCOPY\n\xff\r\n\x00"
        + bytes(8)  # signature, no flags, no header extension
        + b"\x00\x03"
        + b"\x00\x00\x00\x04\x00\x00\x00\x01"
        + b"\x00\x00\x00\x01a"
        + b"\xff\xff\xff\xff"
        + b"\xff\xff"  # the trailer
    )
    typed = (
        "select date '2021-02-08' as d, time '04:05:06.5' as t, interval '1 day 02:00:00' as i, true as b, "
        "array[1, 2] as a, 2.5::double as f, 'x'::text as s"
    )
    answer = (
        "select metric_time__week, sessions_with_checkout, view_to_checkout_rate "
        "from semantic_layer.funnel_by_week order by 1"
    )
    for query, form, types in (
        (typed, "(format binary)", ["date", "time", "interval", "bool", "int4[]", "float8", "text"]),
        (answer, "with binary", ["timestamp", "numeric", "float8"]),
    ):
        expected = pg.execute(query).fetchall()
        with cursor.copy(f"copy ({query}) to stdout {form}") as copy:
            copy.set_types(types)
            assert list(copy.rows()) == expected
        assert cursor.rowcount == len(expected) > 0


def test_binary_numerics_are_postgresqls_bytes() -> None:
    """Each value's binary numeric is what PostgreSQL 15 on this machine sent for it
    (``encode(numeric_send(v::numeric), 'hex')``): integers, as every count is, and fractions."""
    sent = {
        "0": "0000000000000000",
        "-1": "00010000400000000001",
        "9999": "0001000000000000270f",
        "10000": "00010001000000000001",
        "-10000": "00010001400000000001",
        "100000000": "00010002000000000001",
        "123456789012345678901234567890": "0008000700000000000c0d801ed204d2162e23340d801ed2",
        "12.5": "0002000000000001000c1388",
        "-0.001": "0001ffff40000003000a",
    }
    for text, hex_bytes in sent.items():
        ((encoded,),) = encode_rows(pa.table({"v": [Decimal(text)]}), [1])  # an Arrow decimal
        assert encoded is not None and encoded.hex() == hex_bytes, text


def test_adbc_reads_answers_through_binary_copy(
    pg: psycopg.Connection, served: Served, course_sl: SemanticLayer
) -> None:
    """The ADBC PostgreSQL driver, pandas' and polars' Arrow reader: it reads its type table from
    pg_type (``typreceive != 0``), then each answer as ``COPY (…) TO STDOUT (FORMAT binary)`` in
    one extended exchange, on one connection; a bound parameter goes through Bind. pandas'
    read_sql takes the connection as it is."""
    typed = pg.execute(
        "select typname, typreceive::text from pg_catalog.pg_type "
        "where typreceive != 0 and typname in ('int4', '_int4', 'any') order by 1"
    ).fetchall()
    assert typed == [("_int4", "array_recv"), ("int4", "int4recv")]  # as PostgreSQL 15 lists them
    uri = f"postgresql://analyst:{TOKEN}@127.0.0.1:{served.pg_port}/greenery"
    weekly = "select metric_time__week, view_to_checkout_rate from semantic_layer.funnel_by_week order by 1"
    with adbc_postgresql.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute(f"select {', '.join(FUNNEL)} from semantic_layer.funnel_overall")
        funnel = cursor.fetch_arrow_table().to_pylist()
        cursor.execute(weekly)
        weeks = cursor.fetch_arrow_table()
        by_state = "select user__state, orders from semantic_layer.orders"
        cursor.execute(f"{by_state} where user__state = $1", ["Texas"])
        texas = cursor.fetchall()
        assert len(texas) == 1
        listed = connection.adbc_get_objects(depth="tables", db_schema_filter="semantic_layer").read_all()
        frame = pd.read_sql(f"{by_state} order by 1", connection)
    expected = course_sl.query(metrics=FUNNEL).table.to_pylist()[0]
    assert [int(funnel[0][m]) for m in FUNNEL] == [int(expected[m]) for m in FUNNEL]  # numeric: text
    by_week = course_sl.query(
        metrics=["view_to_checkout_rate"], group_by=["metric_time__week"], order_by=["metric_time__week"]
    ).table
    assert [str(t) for t in weeks.schema.types] == ["timestamp[us]", "double"]
    assert weeks["metric_time__week"].to_pylist() == by_week["metric_time__week"].to_pylist()
    rates = by_week["view_to_checkout_rate"].to_pylist()
    assert weeks["view_to_checkout_rate"].to_pylist() == pytest.approx(rates)
    states = _orders_by_state(course_sl)
    assert [(s, int(n)) for s, n in texas] == [(s, n) for s, n in states if s == "Texas"]
    assert [(s, int(n)) for s, n in frame.itertuples(index=False)] == states
    schemas = listed.to_pylist()[0]["catalog_db_schemas"]
    tables, _ = information_schema_listing(served, "orders")
    assert sorted(t["table_name"] for t in schemas[0]["db_schema_tables"]) == tables


def test_copy_writes_values_as_postgres_does() -> None:
    """Quoting and escapes of awkward values: the expected lines are what PostgreSQL 15 on this
    machine wrote for the same four rows (``copy (select * from t) to stdout …``)."""
    rows: list[list[str | None]] = [["x,y", "1", None], ["", "2", 'q"r'], ["tab\there", "3", "new\nline"]]
    rows.append(["\\\\back", None, "ok"])  # two backslashes
    text = copy_request("copy (select * from t) to stdout")
    csv = copy_request("copy (select * from t) to stdout with (format csv, header)")
    older = copy_request("copy t to stdout csv header delimiter ';' null 'NULL'")
    assert b"".join(copy_lines(["a", "b", "c"], rows, text)).decode() == (
        'x,y\t1\t\\N\n\t2\tq"r\ntab\\there\t3\tnew\\nline\n\\\\\\\\back\t\\N\tok\n'
    )
    assert b"".join(copy_lines(["a", "b", "c"], rows, csv)).decode() == (
        'a,b,c\n"x,y",1,\n"",2,"q""r"\ntab\there,3,"new\nline"\n\\\\back,,ok\n'
    )
    assert older.query == "select * from t"
    assert b"".join(copy_lines(["a", "b", "c"], rows, older)).decode() == (
        'a;b;c\nx,y;1;NULL\n;2;"q""r"\ntab\there;3;"new\nline"\n\\\\back;NULL;ok\n'
    )


@pytest.mark.parametrize(
    ("options", "sqlstate"),
    [
        ("(format binary, header)", "0A000"),
        ("(format binary, delimiter ',')", "42601"),
        ("(format binary, null 'x')", "42601"),
        ("(format binary, quote '\"')", "0A000"),
        ("(format text, quote '\"')", "0A000"),
        ("(format binary, escape 'x')", "0A000"),
        ("(delimiter ',,')", "0A000"),
        ("(format csv, quote 'ab')", "0A000"),
        ("(format csv, format csv)", "42601"),
        ("csv binary", "42601"),
        ("(format parquet)", "22023"),
        ("(format csv, delimiter '\"')", "22023"),
        ("(header match)", "0A000"),
    ],
)
def test_copy_options_refused_as_postgres_refuses_them(options: str, sqlstate: str) -> None:
    """Each SQLSTATE is the one PostgreSQL 15 on this machine gave for ``copy (select 1) to stdout …``."""
    with pytest.raises(PgError) as caught:
        copy_request(f"copy (select 1) to stdout {options}")
    assert caught.value.sqlstate == sqlstate


def test_copy_headers_and_escapes_as_postgres_writes_them() -> None:
    """PostgreSQL 15 writes a header in text format too (its names escaped as values are), and in
    CSV puts the ESCAPE character before each quote and escape character inside quotes."""
    text = copy_request("copy (select 1) to stdout (header)")
    assert b"".join(copy_lines(["a b", "c\td"], [["1", None]], text)) == b"a b\tc\\td\n1\t\\N\n"
    escaped = copy_request("copy (select 1) to stdout (format csv, escape '\\')")
    assert b"".join(copy_lines(["x", "y"], [['a"b', "c\\d"]], escaped)) == b'"a\\"b",c\\d\n'


def test_settings_last_as_long_as_in_postgres(pg: psycopg.Connection) -> None:
    """SET LOCAL lasts until the transaction ends (outside one: a warning, no change); a SET in a
    transaction rolled back is taken back; set_config(…, true) is SET LOCAL. The same statements
    on PostgreSQL 15 on this machine show the same values."""
    assert pg.execute("select 1").fetchone() == (1,)  # the catalog is built (seconds, on first use)
    cursor = psycopg.ClientCursor(pg)
    notices: list[str] = []
    pg.add_notice_handler(lambda notice: notices.append(notice.sqlstate or ""))

    def shown() -> str:
        cursor.execute("show statement_timeout")
        row = cursor.fetchone()
        assert row is not None
        return str(row[0])

    cursor.execute("set local statement_timeout = '7s'")
    assert shown() == "0" and notices == ["25P01"]
    cursor.execute("begin; set statement_timeout = '3s'; rollback")
    assert shown() == "0"
    cursor.execute("begin; set local statement_timeout = '4s'")
    assert shown() == "4s"
    cursor.execute("commit")
    assert shown() == "0"
    cursor.execute("begin; set statement_timeout = '5s'; commit")
    assert shown() == "5s"
    cursor.execute("begin; select set_config('statement_timeout', '6s', true)")
    assert cursor.nextset() and cursor.fetchone() == ("6s",) and shown() == "6s"
    cursor.execute("commit")
    assert shown() == "5s"
    before = pg.info.parameter_status("application_name")
    cursor.execute("begin; set application_name = 'in a transaction'")
    assert pg.info.parameter_status("application_name") == "in a transaction"
    cursor.execute("rollback")  # a reported setting taken back is reported again
    assert pg.info.parameter_status("application_name") == before

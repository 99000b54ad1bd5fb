"""psqlODBC, the PostgreSQL ODBC driver (Tableau's and Power BI's ODBC connections, Excel),
through pyodbc, against the Postgres endpoint.

Needs unixODBC and psqlODBC registered as "PostgreSQL Unicode" (Debian: ``apt-get install
unixodbc odbc-postgresql``); skipped without them. Each test runs in both of psqlODBC's ways of
reading an answer: whole (its default) and DECLARE/FETCH two rows at a time
(``UseDeclareFetch=1``, as Tableau's connector sets it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import TOKEN, Served, information_schema_listing
from greenery.semantic.layer import SemanticLayer

pyodbc = pytest.importorskip("pyodbc", reason="pyodbc needs unixODBC's libodbc")
DRIVER = "PostgreSQL Unicode"
FUNNEL = ["sessions_with_page_view", "sessions_with_add_to_cart", "sessions_with_checkout"]
pytestmark = pytest.mark.skipif(
    DRIVER not in pyodbc.drivers(), reason=f"the ODBC driver {DRIVER!r} is not installed (psqlODBC)"
)


@pytest.fixture(params=["UseDeclareFetch=0", "UseDeclareFetch=1;Fetch=2"])
def odbc(request: pytest.FixtureRequest, served: Served) -> Iterator[Any]:
    connection = pyodbc.connect(
        f"DRIVER={{{DRIVER}}};SERVER=127.0.0.1;PORT={served.pg_port};DATABASE=greenery;"
        f"UID=analyst;PWD={TOKEN};{request.param}"
    )
    yield connection
    connection.close()


def test_answers_with_a_bound_parameter(odbc: Any, course_sl: SemanticLayer) -> None:
    cursor = odbc.cursor()
    funnel = cursor.execute(f"select {', '.join(FUNNEL)} from semantic_layer.funnel_overall").fetchall()
    expected = course_sl.query(metrics=FUNNEL).table.to_pylist()[0]
    assert [[int(v) for v in row] for row in funnel] == [[int(expected[m]) for m in FUNNEL]]
    states = sorted(
        (r["user__state"], int(r["orders"]))
        for r in course_sl.query(metrics=["orders"], group_by=["user__state"]).table.to_pylist()
    )
    by_state = "select user__state, orders from semantic_layer.orders"
    rows = cursor.execute(f"{by_state} order by 1").fetchall()
    assert [(s, int(n)) for s, n in rows] == states and len(states) > 2  # more rows than one fetch
    texas = cursor.execute(f"{by_state} where user__state = ?", "Texas").fetchall()
    assert [(s, int(n)) for s, n in texas] == [(s, n) for s, n in states if s == "Texas"] and texas
    days = cursor.execute(
        "select metric_time__day, orders from semantic_layer.orders where metric_time__day >= ? order by 1",
        "2021-02-11",
    ).fetchall()
    by_day = course_sl.query(
        metrics=["orders"],
        group_by=["metric_time__day"],
        where=["{{ TimeDimension('metric_time', 'day') }} >= '2021-02-11'"],
    ).table.to_pylist()
    assert [(d, int(n)) for d, n in days] == [(r["metric_time__day"], int(r["orders"])) for r in by_day]


def test_catalog_functions_list_what_information_schema_lists(odbc: Any, served: Served) -> None:
    """SQLTables, SQLColumns, SQLPrimaryKeys, SQLStatistics and SQLForeignKeys, as a BI tool's
    table picker calls them: the tables and columns, and no keys or indexes."""
    tables, columns = information_schema_listing(served, "orders")
    cursor = odbc.cursor()
    assert sorted(r.table_name for r in cursor.tables(schema="semantic_layer")) == tables
    assert [
        (r.column_name, r.type_name) for r in cursor.columns(table="orders", schema="semantic_layer")
    ] == columns
    assert list(cursor.primaryKeys("orders", schema="semantic_layer")) == []
    assert [r for r in cursor.statistics("orders", schema="semantic_layer") if r.index_name] == []
    assert list(cursor.foreignKeys(table="orders", schema="semantic_layer")) == []


def test_an_error_then_rollback(odbc: Any) -> None:
    cursor = odbc.cursor()
    with pytest.raises(pyodbc.ProgrammingError) as caught:
        cursor.execute("select nope from semantic_layer.orders")
    assert caught.value.args[0] == "42703"
    odbc.rollback()
    assert cursor.execute("select 1").fetchall()[0][0] == 1

"""SQL as BI tools send it, over Arrow Flight SQL (the ADBC driver), on the course data.

Every statement shape dbt's JDBC docs and BI tools use: SQL around the template, the
template in a subquery, ``select 1``, brace-less metadata functions with search and paging,
dimension-only queries, date parts, the entity ``order``, and SQL on the ``semantic_layer``
schema translated into MetricFlow queries. Answers are checked against the warm engine and
pandas; what reaches MetricFlow is checked on the service (the SQL's filter and limit go in).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import oracle
import pandas as pd
import pyarrow as pa
import pytest
from adbc_driver_manager import ProgrammingError

from conftest import fetch, model_tables, table_names
from greenery.semantic.layer import SemanticLayer
from greenery.serve.catalog import Catalog
from greenery.serve.service import QueryRequest, SemanticLayerService
from greenery.serve.sql import SqlApi, SqlError, literal

FUNNEL = ["sessions_with_page_view", "sessions_with_add_to_cart", "sessions_with_checkout"]
BY_STATE = (
    "{{ semantic_layer.query(metrics=['sessions', 'view_to_checkout_rate'], group_by=['user__state']) }}"
)


def rows(table: pa.Table) -> list[dict[str, object]]:
    return [{k: (float(v) if hasattr(v, "as_tuple") else v) for k, v in r.items()} for r in table.to_pylist()]


@pytest.fixture(scope="module")
def by_state(course_sl: SemanticLayer) -> pd.DataFrame:
    answer = course_sl.query(metrics=["sessions", "view_to_checkout_rate"], group_by=["user__state"]).table
    return answer.to_pandas().astype({"sessions": float}).set_index("user__state")


# ---- SQL around the template ------------------------------------------------------------------


def test_projection_where_order_and_limit_around_the_template(
    adbc: flightsql.Connection, by_state: pd.DataFrame
) -> None:
    table = fetch(
        adbc,
        f"select user__state, sessions from {BY_STATE} "
        "where sessions >= 10 order by sessions desc, 1 limit 3",
    )
    expected = (
        by_state[by_state["sessions"] >= 10]
        .reset_index()
        .sort_values(["sessions", "user__state"], ascending=[False, True])
    )
    assert rows(table) == expected[["user__state", "sessions"]].head(3).to_dict("records")


def test_the_template_inside_a_subquery(adbc: flightsql.Connection, by_state: pd.DataFrame) -> None:
    table = fetch(
        adbc,
        "select t.user__state as state, t.view_to_checkout_rate as rate "
        f"from ( select * from {BY_STATE} ) as t where t.user__state in ('Texas', 'Georgia') order by 1",
    )
    expected = by_state.loc[["Georgia", "Texas"], "view_to_checkout_rate"]
    assert [(r["state"], r["rate"]) for r in rows(table)] == list(expected.items())


def test_prepared_statements_bind_parameters_as_jdbc_and_adbc_do(
    adbc: flightsql.Connection, by_state: pd.DataFrame
) -> None:
    """`?` placeholders bound in the order written (the limit's last), the statement bound again."""
    sql = f"select user__state, sessions from {BY_STATE} where user__state in (?, ?) order by 1 limit ?"
    with adbc.cursor() as cursor:
        for bound in (("Texas", "Georgia", 5), ("Ohio", "Texas", 1)):
            cursor.execute(sql, bound)
            expected = [(s, by_state.loc[s, "sessions"]) for s in sorted(bound[:2])[: bound[2]]]
            assert [(s, float(n)) for s, n in cursor.fetchall()] == expected
        cursor.execute("select ? as number, ? as day", (42, dt.date(2021, 2, 10)))
        assert cursor.fetchall() == [(42, "2021-02-10")]
        with pytest.raises(ProgrammingError, match=r"the statement has 0 parameters \(\?\)"):
            cursor.execute(BY_STATE, ("Texas",))


def test_select_1_pings(adbc: flightsql.Connection) -> None:
    assert fetch(adbc, "SELECT 1").to_pylist() == [{"1": 1}]


def test_metadata_functions_without_braces_with_search_and_paging(
    adbc: flightsql.Connection, course_sl: SemanticLayer
) -> None:
    saved = fetch(adbc, "select * from semantic_layer.saved_queries()")
    assert sorted(saved["NAME"].to_pylist()) == course_sl.saved_query_names
    assert "WHERE_FILTER" in saved.column_names
    searched = fetch(
        adbc, "select NAME from semantic_layer.metrics(search='checkout', page_size=2, page_number=1)"
    )
    assert searched.num_rows == 2 and all("checkout" in n for n in searched["NAME"].to_pylist())
    second = fetch(
        adbc, "select NAME from {{ semantic_layer.metrics(search='checkout', page_size=2, page_number=2) }}"
    )
    assert not set(second["NAME"].to_pylist()) & set(searched["NAME"].to_pylist())


def test_queryable_granularities_and_metrics_for_dimensions(adbc: flightsql.Connection) -> None:
    grains = fetch(
        adbc, "select * from {{ semantic_layer.queryable_granularities(metrics=['sessions', 'orders']) }}"
    )
    assert {"day", "week", "month", "year"} <= set(grains["NAME"].to_pylist())
    metrics = fetch(
        adbc,
        "select NAME from {{ semantic_layer.metrics_for_dimensions(group_by=['session__visitor_type']) }}",
    )
    names = set(metrics["NAME"].to_pylist())
    assert {"sessions", "view_to_checkout_rate"} <= names and "orders" not in names


def test_dimension_only_date_part_and_the_order_entity(
    adbc: flightsql.Connection, course_warehouse: Path
) -> None:
    raw = oracle.raw_frames(course_warehouse)
    states = fetch(adbc, "select * from {{ semantic_layer.query(group_by=['user__state']) }} order by 1")
    homes = raw["users"].merge(raw["addresses"], on="address_id")
    assert states["user__state"].to_pylist() == sorted(homes["state"].unique())
    dow = fetch(
        adbc,
        "select * from {{ semantic_layer.query(metrics=['sessions'], "
        "group_by=['metric_time__extract_dow']) }} order by 1",
    )
    started = pd.to_datetime(oracle.sessions(raw)["session_started_at"])
    expected = (started.dt.day_of_week + 1).value_counts().sort_index()
    assert [(r["metric_time__extract_dow"], r["sessions"]) for r in rows(dow)] == list(expected.items())
    orders = fetch(
        adbc, "select count(*) as n from {{ semantic_layer.query(metrics=['orders'], group_by=['order']) }}"
    )
    assert orders["n"].to_pylist() == [len(raw["orders"])]


# ---- the semantic_layer schema -------------------------------------------------------------


def test_a_ratio_by_week_from_a_table_is_metricflows_not_a_sum(
    adbc: flightsql.Connection, course_sl: SemanticLayer
) -> None:
    table = fetch(
        adbc,
        "select metric_time__week, view_to_checkout_rate from semantic_layer.sessions "
        "where metric_time__week >= '2021-02-08' group by 1 order by 1",
    )
    expected = course_sl.query(metrics=["view_to_checkout_rate"], group_by=["metric_time__week"]).table
    assert rows(table) == rows(expected.sort_by("metric_time__week"))


def test_measure_and_sum_around_metrics_as_cube_accepts(adbc: flightsql.Connection) -> None:
    table = fetch(
        adbc,
        "select MEASURE(sessions_with_page_view) as viewed, sum(sessions_with_add_to_cart) as added, "
        "sessions_with_checkout as checked_out from semantic_layer.sessions",
    )
    assert rows(table) == [{"viewed": 578.0, "added": 467.0, "checked_out": 361.0}]


def test_a_time_grain_written_as_date_trunc_is_metricflows_grain(
    spied: tuple[SqlApi, list[QueryRequest]], course_sl: SemanticLayer
) -> None:
    """What a BI tool writes for a chart's time grain: the rate of each week, not of one day in it."""
    api, asked = spied
    asked.clear()
    sql = (
        "select date_trunc('week', metric_time__day) as week, sum(view_to_checkout_rate) as rate "
        "from semantic_layer.sessions group by {} order by {}"
    )
    table = api.execute(sql.format(1, 1))
    assert api.execute(sql.format("week", "week")) == table  # grouped by the alias
    assert [r.group_by for r in asked] == [("metric_time__week",)] * 2
    expected = course_sl.query(metrics=["view_to_checkout_rate"], group_by=["metric_time__week"]).table
    assert rows(table) == [
        {"week": r["metric_time__week"], "rate": r["view_to_checkout_rate"]}
        for r in rows(expected.sort_by("metric_time__week"))
    ]


def test_an_interval_literal_is_read_whole(adbc: flightsql.Connection, course_sl: SemanticLayer) -> None:
    """``interval '6 days ago'`` is minus six days, as PostgreSQL and DuckDB read it; sqlglot
    alone reads only its first part (plus six days), which would leave no day with orders."""
    table = fetch(
        adbc,
        "select metric_time__day, orders from semantic_layer.orders "
        "where metric_time__day > date '2021-02-12' + interval '6 days ago' order by 1",
    )
    expected = course_sl.query(
        metrics=["orders"],
        group_by=["metric_time__day"],
        where=["{{ TimeDimension('metric_time', 'day') }} > '2021-02-06'"],
        order_by=["metric_time__day"],
    ).table
    assert rows(table) == rows(expected) and table.num_rows == 2


def test_group_by_shapes_bi_tools_write_that_are_each_one_row(
    spied: tuple[SqlApi, list[QueryRequest]], course_sl: SemanticLayer
) -> None:
    """Parentheses (Looker), an alias in another case, GROUP BY ALL, a day cast to a date
    (Metabase), ORDER BY the alias a truncation took (Superset): each group one of MetricFlow's rows."""
    api, _ = spied
    by_day = course_sl.query(metrics=["sessions"], group_by=["metric_time__day"]).table.to_pylist()
    expected = sorted((str(r["metric_time__day"])[:10], r["sessions"]) for r in by_day)
    for sql in (
        "select (metric_time__day) as d, sum(sessions) from semantic_layer.sessions group by (1)",
        "select metric_time__day as d, sum(sessions) from semantic_layer.sessions group by D",
        "select metric_time__day, sum(sessions) from semantic_layer.sessions group by all",
        "select cast(metric_time__day as date) as metric_time__day, sum(sessions) "
        "from semantic_layer.sessions group by cast(metric_time__day as date) order by metric_time__day",
    ):
        table = api.execute(sql)
        assert sorted((str(d)[:10], n) for d, n in zip(*table.to_pydict().values(), strict=True)) == expected
    weekly = api.execute(
        "select date_trunc('week', metric_time__day) as metric_time__day, sum(sessions) as n "
        "from semantic_layer.sessions group by date_trunc('week', metric_time__day) order by metric_time__day"
    )
    week = "metric_time__week"
    by_week = course_sl.query(metrics=["sessions"], group_by=[week], order_by=[week]).table
    assert weekly["n"].to_pylist() == by_week["sessions"].to_pylist()


def test_tableaus_dates_discrete_and_continuous_are_metricflows_grains(
    spied: tuple[SqlApi, list[QueryRequest]], course_sl: SemanticLayer
) -> None:
    """Tableau's PostgreSQL connector groups a discrete date by its parts, cast to a number, and
    truncates a continuous one after casting it to a date: the parts that name a year, a quarter
    or a day group by that grain's column, each group one of MetricFlow's rows."""
    api, asked = spied
    rate = 'SUM("sessions"."view_to_checkout_rate") AS "rate"'
    part = 'CAST(EXTRACT({0} FROM "sessions"."metric_time__day") AS BIGINT) AS "{0}"'
    source = 'FROM "semantic_layer"."sessions" "sessions"'
    for parts, grain in (
        (["year"], "year"),
        (["year", "quarter"], "quarter"),
        (["year", "month", "day"], "day"),
    ):
        asked.clear()
        projections = ", ".join(part.format(p) for p in parts)
        positions = ", ".join(str(n + 1) for n in range(len(parts)))
        table = api.execute(
            f"SELECT {projections}, {rate} {source} GROUP BY {positions} ORDER BY {positions}"
        )
        column = f"metric_time__{grain}"
        assert [r.group_by for r in asked] == [(column,)]
        expected = course_sl.query(
            metrics=["view_to_checkout_rate"], group_by=[column], order_by=[column]
        ).table
        assert table["rate"].to_pylist() == expected["view_to_checkout_rate"].to_pylist()
        assert table["year"].to_pylist() == [t.year for t in expected[column].to_pylist()]
    days = [(t.year, t.month, t.day) for t in expected["metric_time__day"].to_pylist()]
    assert list(zip(*table.select(["year", "month", "day"]).to_pydict().values(), strict=True)) == days
    assert len(days) == 3
    asked.clear()
    monthly = api.execute(
        f"""SELECT DATE_TRUNC('MONTH', CAST("sessions"."metric_time__day" AS DATE)) AS "tmn", {rate} """
        f"{source} GROUP BY 1"
    )
    assert [r.group_by for r in asked] == [("metric_time__month",)]
    assert monthly["rate"].to_pylist() == [361 / 578]


def test_a_window_over_metrics_reads_the_answers_rows(
    spied: tuple[SqlApi, list[QueryRequest]], course_sl: SemanticLayer
) -> None:
    """A running total as Metabase writes it (``sum(sum(x)) over (order by …)``), the same
    without GROUP BY, and a share of the total: each window adds up MetricFlow's rows at the
    grain asked for (a metric inside a window is not taken off as ``sum(x)`` alone is)."""
    api, asked = spied
    asked.clear()
    by_day = course_sl.query(
        metrics=["sessions"], group_by=["metric_time__day"], order_by=["metric_time__day"]
    )
    daily = [int(n) for n in by_day.table["sessions"].to_pylist()]
    running = [sum(daily[: i + 1]) for i in range(len(daily))]
    for sql in (
        "select metric_time__day, sum(sum(sessions)) over (order by metric_time__day "
        "rows unbounded preceding) as total from semantic_layer.sessions group by 1 order by 1",
        "select metric_time__day, sum(sessions) over (order by metric_time__day) as total "
        "from semantic_layer.sessions order by 1",
    ):
        assert [int(n) for n in api.execute(sql)["total"].to_pylist()] == running
    shares = api.execute(
        "select metric_time__day, sum(sessions) / sum(sum(sessions)) over () as share "
        "from semantic_layer.sessions group by 1 order by 1"
    )
    assert shares["share"].to_pylist() == pytest.approx([n / sum(daily) for n in daily])
    assert {r.group_by for r in asked} == {("metric_time__day",)}
    assert len(daily) == 3


def test_grouping_a_metric_by_an_expression_over_a_dimension_is_refused(
    spied: tuple[SqlApi, list[QueryRequest]],
) -> None:
    """A group of several rows of MetricFlow's answer would need a rate added up: refused, naming why."""
    api, _ = spied
    for sql in (
        "select case when user__state = 'Texas' then 'TX' else 'other' end as g, sum(sessions) "
        "from semantic_layer.sessions group by 1",
        "select date_trunc('month', metric_time__week), view_to_checkout_rate "
        "from semantic_layer.sessions group by 1",
        # the month of any year, and the year of a week (which can start in the year before)
        "select extract(month from metric_time__day), sum(sessions) from semantic_layer.sessions group by 1",
        "select extract(year from metric_time__week), sum(sessions) from semantic_layer.sessions group by 1",
    ):
        with pytest.raises(SqlError, match=r"group by the columns of semantic_layer\.sessions as they are"):
            api.execute(sql)
    with pytest.raises(SqlError, match="sessions is a metric"):
        api.execute("select count(sessions) from semantic_layer.sessions")


def test_schema_qualified_columns_and_an_expression_over_metrics(adbc: flightsql.Connection) -> None:
    """SQLAlchemy names a column with its schema and table; an expression keeps its written name."""
    qualified = "semantic_layer.sessions"
    table = fetch(
        adbc,
        f"select {qualified}.session__visitor_type, sum({qualified}.sessions_with_checkout) / "
        f"sum({qualified}.sessions_with_page_view) from {qualified} "
        f"group by {qualified}.session__visitor_type",
    )
    name = "sum(sessions_with_checkout) / sum(sessions_with_page_view)"
    assert table.column_names == ["session__visitor_type", name]
    overall = fetch(
        adbc,
        "select sum(sessions_with_checkout) / sum(sessions_with_page_view), view_to_checkout_rate "
        "from semantic_layer.sessions",
    )
    assert overall[name].to_pylist() == pytest.approx([361 / 578])
    assert overall[name].to_pylist() == pytest.approx(overall["view_to_checkout_rate"].to_pylist())


def test_a_saved_query_table_and_a_filter_on_a_dimension_it_does_not_show(
    adbc: flightsql.Connection, course_sl: SemanticLayer
) -> None:
    overall = fetch(adbc, "select * from semantic_layer.funnel_overall")
    assert [int(overall[m][0].as_py()) for m in FUNNEL] == [578, 467, 361]
    new = fetch(
        adbc,
        "select sessions_with_checkout from semantic_layer.funnel_by_user_segment "
        "where session__visitor_type = 'new'",
    )
    expected = course_sl.query(
        metrics=["sessions_with_checkout"], where=["{{ Dimension('session__visitor_type') }} = 'new'"]
    ).table
    assert rows(new) == rows(expected)


def test_a_filter_on_a_dimension_joined_through_another_entity(
    adbc: flightsql.Connection, course_sl: SemanticLayer
) -> None:
    """``session__user__state`` is a user's state reached through the session: MetricFlow's
    where filter names it ``Dimension('user__state', entity_path=['session'])`` (it refuses
    ``Dimension('session__user__state')``, which the SQL API used to send). Checked against
    the same metric grouped by that column, for a dimension and a time dimension."""
    viewed = "product_sessions_viewed"
    by_state = course_sl.query(metrics=[viewed], group_by=["session__user__state"]).table.to_pylist()
    texas = [row[viewed] for row in by_state if row["session__user__state"] == "Texas"]
    table = "semantic_layer.product_sessions"
    filtered = fetch(adbc, f"select {viewed} from {table} where session__user__state = 'Texas'")
    assert filtered[viewed].to_pylist() == texas
    assert texas[0] > 0
    day = "session__order__ordered_at__day"
    by_day = course_sl.query(metrics=[viewed], group_by=[day]).table.to_pylist()
    later = sum(
        row[viewed] for row in by_day if row[day] is not None and row[day] >= dt.datetime(2021, 2, 10)
    )
    filtered = fetch(adbc, f"select {viewed} from {table} where {day} >= '2021-02-10'")
    assert filtered[viewed].to_pylist() == [later]
    assert 0 < later < sum(row[viewed] for row in by_day)


def test_star_is_every_column_the_catalog_lists(adbc: flightsql.Connection, course_sl: SemanticLayer) -> None:
    """``select *`` on each table of the schema answers the columns GetTables gives it, in that
    order; on a semantic model's table, the same rows as naming every column (each metric by
    every dimension and entity: a session's row, here). It used to be a model's metric totals,
    which the offset metric view_to_checkout_rate_wow_change cannot give without metric_time."""
    tables = table_names(adbc, db_schema_filter="semantic_layer")
    assert {"sessions", "orders", "product_sessions", "funnel_by_week"} <= set(tables)
    for table in tables:
        listed = adbc.adbc_get_table_schema(table, db_schema_filter="semantic_layer")
        assert fetch(adbc, f"select * from semantic_layer.{table} limit 3").schema.equals(listed), table
    sessions = adbc.adbc_get_table_schema("sessions", db_schema_filter="semantic_layer")
    every_column = ", ".join(f'"{name}"' for name in sessions.names)
    order = "order by session, metric_time__day limit 5"
    star = fetch(adbc, f"select * from semantic_layer.sessions {order}")
    assert star.equals(fetch(adbc, f"select {every_column} from semantic_layer.sessions {order}"))
    first = star.slice(0, 1).to_pylist()[0]
    expected = course_sl.query(
        metrics=["sessions", "session_revenue"],
        group_by=["user__state"],
        where=[f"{{{{ Entity('session') }}}} = '{first['session']}'"],
    ).table.to_pylist()
    assert expected == [{k: first[k] for k in ("user__state", "sessions", "session_revenue")}]


def test_a_query_without_metrics_reads_the_values_in_the_tables_rows(
    adbc: flightsql.Connection, course_warehouse: Path
) -> None:
    """Tableau asks a date column's range before it draws a filter, Metabase scans a column's
    distinct values: with no metric, MetricFlow would answer every day of the time spine
    (2020-01-01 to 2030-12-31) and every value of a dimension's own table. A semantic model's
    table answers the values its rows hold, a saved query's table those of its answer."""
    raw = oracle.raw_frames(course_warehouse)
    started = pd.to_datetime(oracle.sessions(raw)["session_started_at"]).dt.normalize()
    dates = fetch(
        adbc,
        'SELECT MIN("sessions"."metric_time__day") AS "tmn", MAX("sessions"."metric_time__day") AS "tmx" '
        'FROM "semantic_layer"."sessions" "sessions" HAVING (COUNT(1) > 0)',
    )
    assert list(dates.to_pylist()[0].values()) == [started.min(), started.max()]
    days = fetch(adbc, "select distinct metric_time__day from semantic_layer.sessions order by 1")
    assert days["metric_time__day"].to_pylist() == sorted(started.unique())
    states = fetch(adbc, "select user__state from semantic_layer.sessions group by 1 order by 1")
    homes = raw["users"].merge(raw["addresses"], on="address_id")
    visitors = homes[homes["user_id"].isin(raw["events"]["user_id"])]
    assert states["user__state"].to_pylist() == sorted(visitors["state"].unique())
    weeks = fetch(adbc, "select distinct metric_time__week from semantic_layer.funnel_by_week order by 1")
    answer = fetch(adbc, "select metric_time__week from semantic_layer.funnel_by_week order by 1")
    assert weeks.equals(answer)
    assert answer.num_rows == 2  # the offset metric's week after the data has a row too


def test_unknown_columns_and_joins_are_refused_with_the_reason(adbc: flightsql.Connection) -> None:
    with pytest.raises(ProgrammingError, match="has no column 'revenue'"):
        fetch(adbc, "select revenue from semantic_layer.sessions")
    with pytest.raises(ProgrammingError, match="no joins"):
        fetch(adbc, "select * from semantic_layer.sessions, semantic_layer.orders")
    assert fetch(adbc, "select 2 as two").to_pylist() == [{"two": 2}]  # the connection still serves


def _ordered(rows: list[dict[str, object]], metric: str, columns: list[str]) -> list[dict[str, object]]:
    """Rows as ``order by metric desc nulls last, column… nulls last`` sorts them."""

    def key(row: dict[str, object]) -> tuple[object, ...]:
        value = row[metric]
        first = (value is None, -float(value) if value is not None else 0.0)  # type: ignore[arg-type]
        return (first, *((row[c] is None, row[c] if row[c] is not None else "") for c in columns))

    return sorted(rows, key=key)


def test_random_queries_on_the_tables_answer_what_metricflow_answers(
    adbc: flightsql.Connection, course_sl: SemanticLayer, course_catalog: Catalog
) -> None:
    """Seeded random queries over the semantic models' tables (one to three metrics, up to two
    columns, dimensions two joins away among them, a filter on a column that is not selected,
    an aggregate around the metrics or not, ORDER BY and LIMIT), each compared with MetricFlow's
    answer to the same request, its filter as the SQL API writes it for MetricFlow (checked
    against grouping in test_a_filter_on_a_dimension_joined_through_another_entity). Such a
    comparison found every filter on a column like session__user__state refused."""
    rng = random.Random(20261207)
    covered = dict.fromkeys(["a filter two joins away", "a column two joins away"], 0)
    tables = model_tables(course_catalog)
    for _ in range(60):
        table = rng.choice(tables)
        commuting = [m for m in table.metrics if course_catalog.filter_commutes(m)]
        metrics = rng.sample(commuting, rng.randint(1, min(3, len(commuting))))
        dimensions = [c for c in table.columns if c.role in ("dimension", "time")]
        columns = [c.name for c in rng.sample(dimensions, rng.randint(0, 2))]
        filtered = rng.choice([c for c in dimensions if c.role == "dimension"])
        values = course_sl.query(metrics=metrics[:1], group_by=[filtered.name]).table[filtered.name]
        value = rng.choice([v for v in values.to_pylist() if v is not None])
        wrapped = rng.random() < 0.5
        selected = [f"sum({m}) as {m}" if wrapped else m for m in metrics]
        order, limit = metrics[0], rng.randint(1, 5)
        sql = (
            f"select {', '.join([*columns, *selected])} from semantic_layer.{table.name} "
            f"where {filtered.name} = {literal(value).sql()} "
            + (f"group by {', '.join(columns)} " if wrapped and columns else "")
            + f"order by {', '.join([f'{order} desc nulls last', *(f'{c} nulls last' for c in columns)])} "
            f"limit {limit}"
        )
        where = f"{filtered.template} = {literal(value).sql()}"
        expected = course_sl.query(metrics=metrics, group_by=columns, where=[where]).table.to_pylist()
        assert expected, sql
        wanted = [{k: row[k] for k in [*columns, *metrics]} for row in _ordered(expected, order, columns)]
        assert fetch(adbc, sql).to_pylist() == wanted[:limit], sql
        two_joins = [c for c in [filtered.name, *columns] if "entity_path" in table.column(c).template]
        covered["a filter two joins away"] += filtered.name in two_joins
        covered["a column two joins away"] += bool(set(columns) & set(two_joins))
    assert all(covered.values()), covered


# ---- what reaches MetricFlow ------------------------------------------------------------------


@pytest.fixture(scope="module")
def spied(course_copy: Path) -> Iterator[tuple[SqlApi, list[QueryRequest]]]:
    """The SQL API on a service that records every query it is asked to run."""
    service = SemanticLayerService(course_copy)
    asked: list[QueryRequest] = []
    run_query = service.run_query

    def record(request: QueryRequest, **kwargs: object) -> object:
        asked.append(request)
        return run_query(request, **kwargs)  # type: ignore[arg-type]

    service.run_query = record  # type: ignore[method-assign]
    yield SqlApi(service, transport="test"), asked
    service.close()


def test_a_filter_on_a_group_by_column_and_the_limit_go_into_metricflows_query(
    spied: tuple[SqlApi, list[QueryRequest]],
) -> None:
    api, asked = spied
    asked.clear()
    table = api.execute(
        "select * from {{ semantic_layer.query(metrics=['sessions'], group_by=['user__state']) }} "
        "where user__state = 'Texas' limit 5"
    )
    (request,) = asked
    assert request.where == ("{{ Dimension('user__state') }} = 'Texas'",)
    assert request.limit == 5
    assert table["user__state"].to_pylist() == ["Texas"]


def test_a_filter_on_a_metric_stays_outside_and_keeps_the_limit_out(
    spied: tuple[SqlApi, list[QueryRequest]],
) -> None:
    api, asked = spied
    asked.clear()
    api.execute("select user__state from semantic_layer.sessions where sessions > 20 order by 1 limit 2")
    (request,) = asked
    assert (request.metrics, request.group_by, request.where, request.limit) == (
        ("sessions",),
        ("user__state",),
        (),
        None,
    )


def test_an_offset_metric_is_never_filtered_before_it_is_computed(
    spied: tuple[SqlApi, list[QueryRequest]], course_sl: SemanticLayer
) -> None:
    api, asked = spied
    asked.clear()
    table = api.execute(
        "select metric_time__week, view_to_checkout_rate_wow_change from semantic_layer.sessions "
        "where metric_time__week >= '2021-02-15'"
    )
    assert asked[0].where == ()  # the week-over-week change of the first kept week reads the week before
    full = course_sl.query(metrics=["view_to_checkout_rate_wow_change"], group_by=["metric_time__week"]).table
    kept = [r for r in rows(full) if str(r["metric_time__week"]) >= "2021-02-15"]
    assert rows(table.sort_by("metric_time__week")) == sorted(kept, key=lambda r: r["metric_time__week"])


def test_bad_sql_is_an_error_naming_the_problem(spied: tuple[SqlApi, list[QueryRequest]]) -> None:
    api, _ = spied
    with pytest.raises(SqlError, match="SQL syntax error"):
        api.execute("select from where")
    with pytest.raises(SqlError, match="one statement at a time"):
        api.execute("select 1; select 2")
    with pytest.raises(SqlError, match="table functions are not allowed"):
        api.execute("select 1 where exists (select 1 from glob('/etc/*'))")
    locked = api.execute("select current_setting('enable_external_access') as external_access")
    assert locked.to_pylist() == [{"external_access": False}]  # what runs around the answers reaches no file

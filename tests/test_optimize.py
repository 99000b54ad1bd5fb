"""MetricFlow's twin aggregations merged (greenery.semantic.optimize): same rows, one scan."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pytest

from conftest import model_tables
from greenery.semantic.compat import query_request, quote_reserved_identifiers
from greenery.semantic.layer import SemanticLayer
from greenery.semantic.optimize import merge_twin_aggregations
from greenery.serve.catalog import Catalog

# MetricFlow's shape (funnel_by_user_segment's), over a table with NULL keys: `=` does not
# match them, so the full outer join leaves such a key's two rows apart until the outer
# GROUP BY COALESCE puts them together.
ROWS = (
    "(values ('a', 'x', 1, 1), ('a', null, 1, 0), ('b', null, 0, 1), (null, null, 1, 1), ('b', 'y', 1, 0))"
    " as t(k1, k2, v, w)"
)
TWINS = f"""
select coalesce(l.k1, r.k1) as k1, coalesce(l.k2, r.k2) as k2, max(l.vs) as vs, max(l.ws) as ws,
       max(cast(r.ws as double) / nullif(r.vs, 0)) as rate
from (select t.k1 as k1, t.k2 as k2, sum(v) as vs, sum(w) as ws from {ROWS} group by t.k1, t.k2) l
full outer join (select t.k1 as k1, t.k2 as k2, sum(w) as ws, sum(v) as vs, count(*) as n
                 from {ROWS} group by t.k1, t.k2) r
on l.k1 = r.k1 and l.k2 = r.k2
group by coalesce(l.k1, r.k1), coalesce(l.k2, r.k2)
"""


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in table.column_names])


def _rows(sql: str) -> pa.Table:
    return _sorted(duckdb.sql(sql).arrow().read_all())


def test_twins_with_null_keys_merge_into_one_scan_with_the_same_rows() -> None:
    merged = merge_twin_aggregations(TWINS)
    assert "FULL OUTER JOIN" not in merged.upper()
    assert merged.upper().count("SUM(V)") == 1
    assert "COUNT(*)" not in merged.upper()  # the right side's column nobody reads is not kept
    assert _rows(merged).equals(_rows(TWINS))
    assert _rows(TWINS).num_rows == 5  # the NULL keys stay apart from each other, as before


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (("max(l.vs) as vs", "sum(l.vs) as vs"), "SUM would add a NULL key's two rows differently"),
        (("group by t.k1, t.k2) r", "where v > 0 group by t.k1, t.k2) r"), "different rows"),
        (("on l.k1 = r.k1 and l.k2 = r.k2", "on l.k1 = r.k1"), "not joined on every key"),
        (("full outer join", "left outer join"), "not a full outer join"),
    ],
)
def test_anything_else_is_left_as_written(change: tuple[str, str], why: str) -> None:
    sql = TWINS.replace(*change)
    assert sql != TWINS
    assert merge_twin_aggregations(sql) == sql, why


def test_sql_that_does_not_parse_is_left_as_written() -> None:
    assert merge_twin_aggregations("select from where") == "select from where"


def _as_written(
    layer: SemanticLayer,
    *,
    saved_query: str | None = None,
    metrics: Sequence[str] = (),
    group_by: Sequence[str] = (),
    where: Sequence[str] = (),
) -> str:
    """MetricFlow's SQL for the query, before any rewrite but the quoting every query gets."""
    request = query_request(
        saved_query=saved_query, metrics=metrics, group_by=group_by, where=where, order_by=(), limit=None
    )
    written = layer.engine.explain(request).sql_statement.without_descriptions.sql
    return quote_reserved_identifiers(written, layer._reserved_names)


@pytest.mark.parametrize(
    ("saved_query", "where"),
    [
        ("funnel_by_day", ()),
        ("funnel_by_product", ()),
        ("funnel_by_user_segment", ()),
        ("funnel_by_user_segment", ("{{ Dimension('user__buyer_segment') }} = 'repeat buyer'",)),
    ],
)
def test_metricflow_funnel_queries_run_merged_with_the_same_answer(
    course_sl: SemanticLayer, saved_query: str, where: tuple[str, ...]
) -> None:
    """The funnel saved queries (step counts with their rates) compile to one aggregation, and
    give the rows MetricFlow's own SQL gives."""
    compiled = course_sl.compile(saved_query=saved_query, where=where)
    as_written = _as_written(course_sl, saved_query=saved_query, where=where)
    assert "FULL OUTER JOIN" in as_written
    assert "FULL OUTER JOIN" not in compiled
    answer = _sorted(course_sl.run(compiled))
    assert answer.num_rows > 1
    assert answer.equals(_sorted(course_sl.run(as_written)))


COARSER_GRAINS = ("__week", "__month", "__quarter", "__year")


def test_every_semantic_model_by_each_dimension_merged_gives_metricflows_answer(
    course_sl: SemanticLayer, course_catalog: Catalog
) -> None:
    """Every metric of each semantic model the SQL API offers as a table (those whose filters
    commute: the offset metric needs metric_time) by each of its columns at the day grain, and
    by none: the merged SQL answers what MetricFlow's own does. For a dimension two joins away,
    each twin joins its own subquery (subq_31, subq_42); the merge once copied the right one's
    name into the left's projections, and every such query of product_sessions failed."""
    merged = 0
    for table in model_tables(course_catalog):
        metrics = [m for m in table.metrics if course_catalog.filter_commutes(m)]
        columns = [name for name in table.group_by if not name.endswith(COARSER_GRAINS)]
        for group_by in [(), *((name,) for name in columns)]:
            compiled = course_sl.compile(metrics=metrics, group_by=group_by)
            as_written = _as_written(course_sl, metrics=metrics, group_by=group_by)
            merged += compiled != as_written
            answer = _sorted(course_sl.run(compiled))
            assert answer.equals(_sorted(course_sl.run(as_written))), (table.name, group_by)
    assert merged >= 70  # most of them have twins to merge

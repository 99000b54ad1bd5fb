"""Two gaps of MetricFlow 0.213 that clients hit, filled in before and after it compiles.

- Date parts: MetricFlow cannot parse a group-by *name* such as ``metric_time__extract_dow``
  (what dbt's JDBC docs and GraphQL's ``datePart`` ask for); it does accept the same item as
  a parameter object. `query_request` turns such names into objects.
- Reserved words: MetricFlow's DuckDB SQL names an entity called ``order`` unquoted
  (``SELECT order``, ``AS order``, ``GROUP BY order``), which DuckDB refuses.
  `quote_reserved_identifiers` quotes such names where the SQL uses them as columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import duckdb
from metricflow.engine.metricflow_engine import MetricFlowQueryRequest
from metricflow_semantic_interfaces.type_enums.date_part import DatePart
from metricflow_semantic_interfaces.type_enums.time_granularity import TimeGranularity
from metricflow_semantics.specs.query_param_implementations import (
    DimensionOrEntityParameter,
    MetricParameter,
    OrderByParameter,
    TimeDimensionParameter,
)

_DATE_PART = re.compile(r"^(?P<base>\w+?)__extract_(?P<part>[a-z]+)$")
_GRAINS = frozenset(g.value for g in TimeGranularity)
GroupByParameter = TimeDimensionParameter | DimensionOrEntityParameter


def date_part_of(name: str) -> tuple[str, DatePart] | None:
    """``metric_time__extract_dow`` → (``metric_time``, DatePart.DOW); None for other names."""
    match = _DATE_PART.match(name)
    if match is None:
        return None
    try:
        return match["base"], DatePart(match["part"])
    except ValueError:
        known = ", ".join(p.value for p in DatePart)
        raise ValueError(f"{name!r}: unknown date part {match['part']!r} (known: {known})") from None


def _group_by_parameter(name: str) -> GroupByParameter:
    part = date_part_of(name)
    if part is not None:  # a grain before the date part (metric_time__day__extract_dow) changes nothing
        base, _, grain = part[0].rpartition("__")
        return TimeDimensionParameter(name=base if base and grain in _GRAINS else part[0], date_part=part[1])
    base, _, grain = name.rpartition("__")
    if base and grain in _GRAINS:
        return TimeDimensionParameter(name=base, grain=grain)
    return DimensionOrEntityParameter(name=name)


def query_request(
    *,
    saved_query: str | None,
    metrics: Sequence[str],
    group_by: Sequence[str],
    where: Sequence[str],
    order_by: Sequence[str],
    limit: int | None,
) -> MetricFlowQueryRequest:
    """MetricFlow's request: by names, or by parameter objects when a date part is asked for."""
    if not any(date_part_of(n.removeprefix("-")) for n in [*group_by, *order_by]):
        return MetricFlowQueryRequest.create(
            saved_query_name=saved_query,
            metric_names=list(metrics) or None,
            group_by_names=list(group_by) or None,
            where_constraints=list(where) or None,
            order_by_names=list(order_by) or None,
            limit=limit,
        )
    by_name = {name: _group_by_parameter(name) for name in group_by}
    order = [
        OrderByParameter(
            order_by=by_name.get(name.removeprefix("-")) or MetricParameter(name=name.removeprefix("-")),
            descending=name.startswith("-"),
        )
        for name in order_by
    ]
    return MetricFlowQueryRequest.create(
        saved_query_name=saved_query,
        metrics=[MetricParameter(name=m) for m in metrics] or None,
        group_by=list(by_name.values()) or None,
        where_constraints=list(where) or None,
        order_by=order or None,
        limit=limit,
    )


def reserved_words(names: Iterable[str]) -> frozenset[str]:
    """The names that DuckDB reserves (``order``): MetricFlow leaves them unquoted."""
    rows = duckdb.sql("select keyword_name from duckdb_keywords() where keyword_category = 'reserved'")
    reserved = {name for (name,) in rows.fetchall()}
    return frozenset(n for n in names if n in reserved)


def quote_reserved_identifiers(sql: str, names: frozenset[str]) -> str:
    """Quote `names` (reserved words the semantic model uses as names) where MetricFlow's SQL
    uses them as columns.

    MetricFlow writes SQL keywords in upper case and the project's names in lower case, so a
    lower-case ``order`` not followed by ``by`` is the column, wherever it stands.
    """
    if not names:
        return sql
    tokens = duckdb.tokenize(sql)
    ends = [start for start, _ in tokens[1:]] + [len(sql)]
    texts = [sql[start:end].rstrip() for (start, _), end in zip(tokens, ends, strict=True)]
    edits = [
        (start, text)
        for i, ((start, kind), text) in enumerate(zip(tokens, texts, strict=True))
        if kind == duckdb.token_type.keyword
        and text in names
        and not (i + 1 < len(texts) and texts[i + 1].lower() == "by")
    ]
    for start, text in reversed(edits):
        sql = f'{sql[:start]}"{text}"{sql[start + len(text) :]}'
    return sql

"""dbt's JDBC metadata functions as Arrow tables: ``{{ semantic_layer.metrics() }}`` and the rest.

Columns are upper case, as dbt's JDBC API names them; rows come from the published
version's `Catalog`. ``search``, ``page_size`` and ``page_number`` narrow and page the
lists as GraphQL's paginated fields do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from greenery.serve.catalog import Catalog, Json, page
from greenery.serve.statements import MetadataStatement

Column = tuple[str, pa.DataType, Callable[[Json], Any]]
_TEXT, _FLAG, _TEXTS = pa.utf8(), pa.bool_(), pa.list_(pa.utf8())


def _key(name: str) -> Callable[[Json], Any]:
    return lambda item: item[name]


def _names_of(name: str) -> Callable[[Json], list[str]]:
    return lambda item: [element["name"] for element in item[name]]


def _group_by_names(query: Json) -> list[str]:
    return [
        g["name"] + (f"__{g['timeGranularity']}" if g["timeGranularity"] else "")
        for g in query["queryParams"]["groupBy"]
    ]


_METRIC: list[Column] = [
    ("NAME", _TEXT, _key("name")),
    ("DESCRIPTION", _TEXT, _key("description")),
    ("TYPE", _TEXT, _key("type")),
    ("LABEL", _TEXT, _key("label")),
    ("REQUIRES_METRIC_TIME", _FLAG, _key("requiresMetricTime")),
    ("QUERYABLE_GRANULARITIES", _TEXTS, _key("queryableTimeGranularities")),
    ("DIMENSIONS", _TEXTS, _names_of("dimensions")),
]
COLUMNS: dict[str, list[Column]] = {
    "metrics": _METRIC,
    "metrics_for_dimensions": _METRIC,
    "dimensions": [
        ("NAME", _TEXT, _key("name")),
        ("QUALIFIED_NAME", _TEXT, _key("qualifiedName")),
        ("DESCRIPTION", _TEXT, _key("description")),
        ("TYPE", _TEXT, _key("type")),
        ("LABEL", _TEXT, _key("label")),
        ("IS_PARTITION", _FLAG, _key("isPartition")),
        ("EXPR", _TEXT, _key("expr")),
        ("QUERYABLE_GRANULARITIES", _TEXTS, _key("queryableTimeGranularities")),
    ],
    "entities": [
        ("NAME", _TEXT, _key("name")),
        ("DESCRIPTION", _TEXT, _key("description")),
        ("TYPE", _TEXT, _key("type")),
        ("ROLE", _TEXT, _key("role")),
        ("EXPR", _TEXT, _key("expr")),
    ],
    "measures": [
        ("NAME", _TEXT, _key("name")),
        ("AGG", _TEXT, _key("agg")),
        ("EXPR", _TEXT, _key("expr")),
        ("AGG_TIME_DIMENSION", _TEXT, _key("aggTimeDimension")),
    ],
    "saved_queries": [
        ("NAME", _TEXT, _key("name")),
        ("DESCRIPTION", _TEXT, _key("description")),
        ("LABEL", _TEXT, _key("label")),
        ("METRICS", _TEXTS, lambda q: [m["name"] for m in q["queryParams"]["metrics"]]),
        ("GROUP_BY", _TEXTS, _group_by_names),
        ("WHERE_FILTER", _TEXT, lambda q: (q["queryParams"]["where"] or {}).get("whereSqlTemplate")),
    ],
    "queryable_granularities": [("NAME", _TEXT, _key("name"))],
}


def _common_grains(catalog: Catalog, metrics: Sequence[str]) -> list[Json]:
    """The grains every one of the metrics can be queried at, finest first."""
    names = metrics or [m["name"] for m in catalog.metrics]
    by_name = {m["name"]: m for m in catalog.metrics}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}")
    grains = [g for g in by_name[names[0]]["queryableTimeGranularities"]]
    common = [g for g in grains if all(g in by_name[n]["queryableTimeGranularities"] for n in names)]
    return [{"name": g} for g in common]


def _items(statement: MetadataStatement, catalog: Catalog) -> list[Json]:
    kind = statement.kind
    if kind == "metrics":
        return catalog.metrics
    if kind == "metrics_for_dimensions":
        return catalog.metrics_for(statement.group_by)
    if kind == "dimensions":
        return catalog.dimensions(statement.metrics)
    if kind == "entities":
        return catalog.entities(statement.metrics)
    if kind == "measures":
        return catalog.measures(statement.metrics)
    if kind == "queryable_granularities":
        return _common_grains(catalog, statement.metrics)
    return catalog.saved_queries


def metadata_table(statement: MetadataStatement, catalog: Catalog) -> pa.Table:
    """The rows of a metadata function, searched and paged as asked."""
    items = _items(statement, catalog)
    if statement.search is not None or statement.page_size is not None:
        items = page(
            items,
            search=statement.search,
            page_num=statement.page_number,
            page_size=statement.page_size or max(1, len(items)),
        ).items
    columns = COLUMNS[statement.kind]
    return pa.table({name: pa.array([get(item) for item in items], type=kind) for name, kind, get in columns})

"""The ``semantic_layer`` schema: what a BI tool browses and selects from, as tables.

- one table per saved query: its group-by items and metrics as columns, its filter built in;
- one table per semantic model that metrics are built on (sessions, orders, …): those
  metrics, and the dimensions and entities all of them can be grouped by, each time
  dimension once per grain (``metric_time__day`` … ``metric_time__year``).

These tables hold no rows: the SQL API (greenery.serve.sql) turns a query on one into a
MetricFlow query, so every number comes from the metric definitions. Column types are those
of MetricFlow's own answer (one zero-row query per table, when the table is first described).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import pyarrow as pa

from greenery.serve.catalog import Catalog, Json

SCHEMA = "semantic_layer"
TABLE_GRAINS = ("day", "week", "month", "quarter", "year")  # the grains a table offers per time dimension
Role = Literal["metric", "dimension", "time", "entity"]


@dataclass(frozen=True)
class SqlColumn:
    name: str  # as MetricFlow names the output column: metric_time__week, session__visitor_type
    role: Role
    description: str | None = None

    @property
    def template(self) -> str:
        """The column as a MetricFlow where-filter reference.

        A where filter names a dimension by its entity and itself (``user__state``); the
        entities joined through before that go in ``entity_path``: the column
        ``session__user__state`` is ``Dimension('user__state', entity_path=['session'])``.
        """
        if self.role == "entity":
            return f"{{{{ Entity('{self.name}') }}}}"
        if self.role == "time":
            base, _, grain = self.name.rpartition("__")
            name, path = _entity_path(base)
            return f"{{{{ TimeDimension('{name}', '{grain}'{path}) }}}}"
        name, path = _entity_path(self.name)
        return f"{{{{ Dimension('{name}'{path}) }}}}"


def _entity_path(name: str) -> tuple[str, str]:
    """``a__b__c`` as the name ``b__c`` and the argument ``, entity_path=['a']``."""
    parts = name.split("__")
    if len(parts) <= 2:
        return name, ""
    return "__".join(parts[-2:]), f", entity_path={parts[:-2]!r}"


@dataclass(frozen=True)
class SqlTable:
    name: str
    description: str
    columns: tuple[SqlColumn, ...]
    saved_query: str | None = None
    where: tuple[str, ...] = ()  # a saved query's own filter
    # a semantic model's metric with a row for each group of its rows (Catalog.has_every_group)
    row_metric: str | None = None
    _by_name: dict[str, SqlColumn] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    def column(self, name: str) -> SqlColumn | None:
        return self._by_name.get(name.lower())

    @property
    def metrics(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "metric"]

    @property
    def group_by(self) -> list[str]:
        return [c.name for c in self.columns if c.role != "metric"]


def _group_by_column(item: Json) -> str:
    name = item["name"] + (f"__{item['timeGranularity']}" if item["timeGranularity"] else "")
    return name + (f"__extract_{item['datePart'].lower()}" if item["datePart"] else "")


class SqlTables:
    """The tables of one published version; their Arrow schemas computed on first use."""

    def __init__(self, catalog: Catalog, describe: Callable[[list[str], list[str]], pa.Schema]) -> None:
        self._catalog = catalog
        self._describe = describe  # (metrics, group_by) → the schema of MetricFlow's answer
        self._schemas: dict[str, pa.Schema] = {}
        self._lock = threading.Lock()

    @cached_property
    def _entities(self) -> set[str]:
        return {e["name"] for m in self._catalog.metrics for e in m["entities"]} | {
            e["name"] for entities in self._catalog.model_entities.values() for e in entities
        }

    @cached_property
    def tables(self) -> dict[str, SqlTable]:
        tables = [self._saved_query_table(q) for q in self._catalog.saved_queries]
        tables += self._model_tables()
        return {t.name: t for t in sorted(tables, key=lambda t: t.name)}

    def get(self, name: str) -> SqlTable:
        table = self.tables.get(name.lower())
        if table is None:
            raise ValueError(f"unknown table {SCHEMA}.{name} (tables: {', '.join(self.tables)})")
        return table

    def schema(self, name: str) -> pa.Schema:
        """The table's columns, typed as MetricFlow answers them, in the table's order (computed once)."""
        with self._lock:
            if name not in self._schemas:
                table = self.get(name)
                described = self._describe(table.metrics, table.group_by)
                self._schemas[name] = pa.schema([described.field(c.name) for c in table.columns])
            return self._schemas[name]

    def _saved_query_table(self, query: Json) -> SqlTable:
        metrics = {m["name"]: m for m in self._catalog.metrics}
        params = query["queryParams"]
        group_by = [_group_by_column(g) for g in params["groupBy"]]
        columns = [SqlColumn(name, self.role_of(name)) for name in group_by]
        columns += [
            SqlColumn(m["name"], "metric", metrics.get(m["name"], {}).get("description"))
            for m in params["metrics"]
        ]
        where = (params["where"] or {}).get("whereSqlTemplate")
        return SqlTable(
            query["name"],
            query["description"] or query["label"] or query["name"],
            tuple(columns),
            saved_query=query["name"],
            where=(where,) if where else (),
        )

    def role_of(self, name: str) -> Role:
        """What a group-by item's name refers to: an entity, a time dimension or another dimension."""
        if name in self._entities:
            return "entity"
        base, _, grain = name.rpartition("__")
        return "time" if base and (grain in TABLE_GRAINS or grain.startswith("extract_")) else "dimension"

    def _model_tables(self) -> list[SqlTable]:
        groups: dict[str, list[Json]] = {}
        for metric in self._catalog.metrics:
            groups.setdefault(self._catalog.home_model(metric["name"]), []).append(metric)
        return [self._model_table(model, metrics) for model, metrics in groups.items()]

    def _model_table(self, model: str, metrics: list[Json]) -> SqlTable:
        names = [m["name"] for m in metrics]
        columns: list[SqlColumn] = []
        for dimension in self._catalog.dimensions(names):
            if dimension["type"] == "TIME":
                grains = [g for g in TABLE_GRAINS if g in dimension["queryableTimeGranularities"]]
                columns += [
                    SqlColumn(f"{dimension['name']}__{g}", "time", dimension["description"]) for g in grains
                ]
            else:
                columns.append(SqlColumn(dimension["name"], "dimension", dimension["description"]))
        # the model's own entities: MetricFlow groups its metrics by these names directly
        columns += [
            SqlColumn(e["name"], "entity", e["description"]) for e in self._catalog.model_entities[model]
        ]
        columns += [SqlColumn(m["name"], "metric", m["description"]) for m in metrics]
        return SqlTable(
            model,
            f"Metrics of the {model} semantic model, by their dimensions",
            tuple(columns),
            row_metric=next((name for name in names if self._catalog.has_every_group(name)), None),
        )

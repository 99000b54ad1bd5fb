"""Declarative caching: a query answered from a saved query's export table when that is exact.

dbt Cloud answers a query from a saved query's export when it can; dbt Core has no such thing.
Here an `ExportCache` over one published warehouse copy knows the export tables that are
*current* — computed by `greenery export` from the very build the copy holds, with the same
semantic manifest — and rewrites a query MetricFlow has compiled into SQL over one of them
when the answer is provably the same:

- metrics: the export's, or a subset when every metric of the saved query aggregates the
  same rows (one semantic model, no filters, offsets, time spine or conversion), so the
  rows MetricFlow returns for fewer metrics are the same groups;
- group-by: the export's, or a subset when each asked metric is a simple metric whose
  measure re-aggregates exactly (sum/count of integers or decimals, min, max; never
  count_distinct, averages, floating sums or semi-additive measures), summed over the
  dropped dimensions;
- where filters: only on the export's dimension columns, and only when no metric depends on
  rows of other groups (conversion, cumulative, offset windows, time spine joins);
- order by / limit as MetricFlow renders them, over the output columns.

Staleness guard: every dbt build, run, seed and snapshot records its invocation id in
``greenery_meta.build`` (macros/record_build.sql); each export records in
``greenery_meta.exports`` the build id and the semantic manifest's hash it was computed
from. An export whose build id or manifest hash differs from the published copy's is
never read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
from metricflow_semantic_interfaces.protocols.metric import Metric
from metricflow_semantic_interfaces.type_enums.aggregation_type import AggregationType
from metricflow_semantic_interfaces.type_enums.metric_type import MetricType
from metricflow_semantic_interfaces.type_enums.time_granularity import TimeGranularity

from greenery.semantic import filters
from greenery.semantic.cache import Lru
from greenery.semantic.layer import MetricQuery

META_SCHEMA = "greenery_meta"
BUILD_RELATION = f'"{META_SCHEMA}"."build"'  # written by macros/record_build.sql
EXPORTS_RELATION = f'"{META_SCHEMA}"."exports"'
CACHE_MARK = "-- greenery declarative cache:"  # first line of SQL answered from an export
KEEP_REWRITES = 1024  # rewrites (or "not from an export") kept per published version
_GRAINS = frozenset(g.value for g in TimeGranularity)
_REAGGREGATE = {
    AggregationType.SUM: "sum",
    AggregationType.SUM_BOOLEAN: "sum",
    AggregationType.COUNT: "sum",
    AggregationType.MIN: "min",
    AggregationType.MAX: "max",
}
_EXACT_SUM_TYPE = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|DECIMAL\(\d+,\d+\))$")


def current_build_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The id of the dbt invocation the warehouse holds (None before the first recorded build)."""
    try:
        row = con.execute(f"select build_id from {BUILD_RELATION}").fetchone()
    except duckdb.CatalogException:
        return None
    return row[0] if row else None


def record_export(
    con: duckdb.DuckDBPyConnection, *, saved_query: str, export: str, relation: str, manifest_sha256: str
) -> None:
    """Note that `relation` now holds the saved query's rows for the warehouse's current build."""
    con.execute(f'create schema if not exists "{META_SCHEMA}"')
    con.execute(
        f"create table if not exists {EXPORTS_RELATION} (relation varchar primary key, saved_query varchar,"
        " export varchar, build_id varchar, manifest_sha256 varchar, exported_at timestamp)"
    )
    con.execute(f"delete from {EXPORTS_RELATION} where relation = ?", [relation])
    con.execute(
        f"insert into {EXPORTS_RELATION} values (?, ?, ?, ?, ?, current_timestamp)",
        [relation, saved_query, export, current_build_id(con), manifest_sha256],
    )


@dataclass(frozen=True)
class ExportTable:
    """A current export table: what its saved query asked for, and its columns' types."""

    relation: str
    saved_query: str
    metrics: tuple[str, ...]
    group_by: tuple[str, ...]
    columns: dict[str, str]  # name → DuckDB type
    build_id: str


@dataclass(frozen=True)
class CachedSql:
    sql: str
    export: ExportTable


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ExportCache:
    """The current export tables of one published warehouse, and the rewrite onto them."""

    def __init__(self, con: duckdb.DuckDBPyConnection | None, manifest: object, manifest_sha256: str) -> None:
        """Over a published copy's connection; with `con` None, a cache with no export tables."""
        self._con = con
        self._metrics: dict[str, Metric] = {m.name: m for m in manifest.metrics}  # type: ignore[attr-defined]
        self._measures = {
            measure.name: (model.name, measure)
            for model in manifest.semantic_models  # type: ignore[attr-defined]
            for measure in model.measures
        }
        self.build_id = current_build_id(con) if con is not None else None
        self.exports = self._current_exports(con, manifest, manifest_sha256) if con is not None else []
        self._rewrites: Lru[MetricQuery, CachedSql | bool] = Lru(KEEP_REWRITES)

    def _current_exports(
        self, con: duckdb.DuckDBPyConnection, manifest: object, manifest_sha256: str
    ) -> list[ExportTable]:
        if self.build_id is None:
            return []
        try:
            marks = con.execute(
                f"select relation, saved_query from {EXPORTS_RELATION}"
                " where build_id = ? and manifest_sha256 = ?",
                [self.build_id, manifest_sha256],
            ).fetchall()
        except duckdb.CatalogException:
            return []
        queries = {q.name: q for q in manifest.saved_queries}  # type: ignore[attr-defined]
        database = _quote(con.execute("select current_database()").fetchone()[0])
        tables = []
        for schema_and_table, name in marks:
            relation = f"{database}.{schema_and_table}"  # cursors do not share the connection's USE
            query = queries.get(name)
            if query is None or query.query_params.where is not None:
                continue  # a saved query with its own filter: its rows are not the plain answer
            group_by = [self._group_by_name(item) for item in query.query_params.group_by]
            if None in group_by:
                continue
            try:
                described = con.sql(f"select * from {relation}")
            except duckdb.Error:
                continue  # dropped since, or a view that no longer binds
            if len(set(described.columns)) != len(described.columns):
                continue
            tables.append(
                ExportTable(
                    relation=relation,
                    saved_query=name,
                    metrics=tuple(query.query_params.metrics),
                    group_by=tuple(g for g in group_by if g is not None),
                    columns={c: str(t) for c, t in zip(described.columns, described.types, strict=True)},
                    build_id=self.build_id,
                )
            )
        return tables

    @staticmethod
    def _group_by_name(item: str) -> str | None:
        """``TimeDimension('metric_time', 'week')`` → ``metric_time__week`` (None if not that simple)."""
        try:
            ref = filters.parse_reference(item.strip().removeprefix("{{").removesuffix("}}"))
        except ValueError:
            return None
        if ref.date_part is not None or ref.kind == "Metric":
            return None
        if ref.kind == "TimeDimension":
            return f"{ref.name}__{ref.grain}" if ref.grain else None
        return ref.name

    # -- metric properties ------------------------------------------------------------------

    def _inputs(self, metric: Metric) -> list[tuple[Metric, object]]:
        """(input metric, how it is used) of a ratio or derived metric."""
        params = metric.type_params
        uses = [params.numerator, params.denominator] if metric.type is MetricType.RATIO else params.metrics
        return [(self._metrics[u.name], u) for u in uses or []]

    def _filter_safe(self, metric: Metric) -> bool:
        """Its value for a group depends only on that group's rows (so a filter on a group key commutes)."""
        if metric.type in (MetricType.CONVERSION, MetricType.CUMULATIVE):
            return False
        if metric.type is MetricType.SIMPLE:
            measure_input = metric.type_params.measure
            return not metric.type_params.join_to_timespine and not (
                measure_input is not None and measure_input.join_to_timespine
            )
        return all(
            use.offset_window is None and use.offset_to_grain is None and self._filter_safe(m)
            for m, use in self._inputs(metric)
        )

    def _plain_sources(self, metric: Metric) -> set[str] | None:
        """The semantic models of a metric that aggregates all rows of its model(s), unfiltered; else None."""
        if metric.filter is not None or metric.type in (MetricType.CONVERSION, MetricType.CUMULATIVE):
            return None
        if metric.type is MetricType.SIMPLE:
            params = metric.type_params
            measure_input = params.measure
            aggregation = self._aggregation(metric)
            if (
                aggregation is None
                or aggregation[2]  # semi-additive: only the rows at the last time count
                or params.join_to_timespine
                or params.fill_nulls_with is not None
                or (
                    measure_input is not None
                    and (
                        measure_input.filter is not None
                        or measure_input.fill_nulls_with is not None
                        or measure_input.join_to_timespine
                    )
                )
            ):
                return None
            return {aggregation[0]}
        sources: set[str] = set()
        for m, use in self._inputs(metric):
            inner = self._plain_sources(m)
            if inner is None or use.filter is not None or use.offset_window or use.offset_to_grain:
                return None
            sources |= inner
        return sources

    def _same_groups(self, metrics: Sequence[str]) -> bool:
        """Any subset of these metrics yields the same groups (one model's rows, unfiltered)."""
        sources: set[str] = set()
        for name in metrics:
            found = self._plain_sources(self._metrics[name])
            if found is None:
                return False
            sources |= found
        return len(sources) == 1

    def _aggregation(self, metric: Metric) -> tuple[str, AggregationType, bool] | None:
        """A simple metric's (semantic model, aggregation, whether semi-additive)."""
        params = metric.type_params
        if params.metric_aggregation_params is not None:
            agg = params.metric_aggregation_params
            return agg.semantic_model, agg.agg, agg.non_additive_dimension is not None
        if params.measure is None or params.measure.name not in self._measures:
            return None
        model, measure = self._measures[params.measure.name]
        return model, measure.agg, measure.non_additive_dimension is not None

    def _reaggregation(self, metric: Metric, column_type: str) -> str | None:
        """The aggregate that folds the export's per-group values exactly, or None."""
        if metric.type is not MetricType.SIMPLE or self._plain_sources(metric) is None:
            return None
        aggregation = self._aggregation(metric)
        agg = _REAGGREGATE.get(aggregation[1]) if aggregation else None
        if agg == "sum" and not _EXACT_SUM_TYPE.match(column_type):
            return None  # floating-point sums are not exact in another order
        return agg

    # -- the rewrite ------------------------------------------------------------------------

    def rewrite(self, query: MetricQuery, compiled_sql: str) -> CachedSql | None:
        """SQL over an export table giving exactly MetricFlow's answer to the query, or None.

        `compiled_sql` is MetricFlow's SQL for the same (already validated) query: its output
        columns and types are what the rewrite must reproduce. Decided once per query.
        """
        if not self.exports:
            return None
        known = self._rewrites.get(query)
        if known is None:
            known = self._rewrite(query, compiled_sql) or False
            self._rewrites.put(query, known)
        return known or None

    def _rewrite(self, query: MetricQuery, compiled_sql: str) -> CachedSql | None:
        metrics, group_by, where, order_by, limit, saved_query = query
        if saved_query is not None:
            if metrics or group_by:
                return None
            export = next((e for e in self.exports if e.saved_query == saved_query), None)
            if export is None:
                return None
            metrics, group_by = export.metrics, export.group_by
        if not metrics or any(name not in self._metrics for name in metrics):
            return None
        try:
            with self._con.cursor() as cursor:  # type: ignore[union-attr]  # binds MetricFlow's SQL, runs nothing
                output = cursor.sql(compiled_sql)
                wanted = dict(zip(output.columns, (str(t) for t in output.types), strict=True))
        except duckdb.Error:
            return None
        for export in self.exports:
            sql = self._over(export, metrics, group_by, where, order_by, limit, wanted)
            if sql is not None:
                return CachedSql(sql, export)
        return None

    def _over(
        self,
        export: ExportTable,
        metrics: Sequence[str],
        group_by: Sequence[str],
        where: Sequence[str],
        order_by: Sequence[str],
        limit: int | None,
        wanted: dict[str, str],
    ) -> str | None:
        if not set(metrics) <= set(export.metrics) or not set(group_by) <= set(export.group_by):
            return None
        if set(wanted) != {*metrics, *group_by} or not set(wanted) <= set(export.columns):
            return None
        if set(metrics) != set(export.metrics) and not self._same_groups(export.metrics):
            return None
        folded = set(group_by) != set(export.group_by)
        if where and not all(self._filter_safe(self._metrics[m]) for m in metrics):
            return None
        conditions = [self._condition(w, export) for w in where]
        if None in conditions:
            return None
        select = []
        for name, type_ in wanted.items():
            expression = _quote(name)
            if folded and name in metrics:
                agg = self._reaggregation(self._metrics[name], export.columns[name])
                if agg is None:
                    return None
                expression = f"{agg}({expression})"
            if (folded and name in metrics) or export.columns[name] != type_:
                expression = f"cast({expression} as {type_})"
            select.append(f"{expression} as {_quote(name)}")
        lines = [
            f"{CACHE_MARK} answered from export table {export.relation} "
            f"(saved query {export.saved_query}, build {export.build_id})",
            "select " + ", ".join(select),
            f"from {export.relation}",
        ]
        if conditions:
            lines.append("where " + " and ".join(f"({c})" for c in conditions))
        if folded:
            lines.append("group by " + ", ".join(_quote(g) for g in group_by) if group_by else "")
        if order_by:
            if any(o.removeprefix("-") not in wanted for o in order_by):
                return None
            terms = [_quote(o.removeprefix("-")) + (" desc" if o.startswith("-") else "") for o in order_by]
            lines.append("order by " + ", ".join(terms))
        if limit:  # MetricFlow too leaves out a limit of 0: the same answer either way
            lines.append(f"limit {int(limit)}")
        return "\n".join(line for line in lines if line)

    def _condition(self, where: str, export: ExportTable) -> str | None:
        """A normalized where filter as SQL over the export's columns (None if it reaches elsewhere)."""
        refs: list[str] = []

        def column(match: re.Match[str]) -> str:
            try:
                ref = filters.parse_reference(match.group(1))
            except ValueError:
                refs.append("")
                return ""
            name = None
            if ref.date_part is None and ref.kind == "TimeDimension" and ref.grain:
                name = f"{ref.name}__{ref.grain}"
            elif ref.date_part is None and ref.grain is None and ref.kind in ("Dimension", "Entity"):
                base, _, last = ref.name.rpartition("__")
                name = None if base and last in _GRAINS else ref.name
            if name is None or name not in export.group_by:
                refs.append("")
                return ""
            refs.append(name)
            return _quote(name)

        sql = filters.sub_templates(column, where)
        return None if "" in refs else sql


def export_of(sql: str) -> str | None:
    """The export table SQL written by `ExportCache.rewrite` reads (None for other SQL)."""
    if not sql.startswith(CACHE_MARK):
        return None
    match = re.search(r"answered from export table (\S+)", sql.partition("\n")[0])
    return match.group(1) if match else None

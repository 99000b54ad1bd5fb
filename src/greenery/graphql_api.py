"""The dbt Semantic Layer GraphQL API: schema, metadata catalog and resolvers.

Field names, argument types and enum values are the ones `dbt-sl-sdk` sends and decodes
(checked with the real client in tests/test_server.py): list arguments are nullable, ``environmentId`` is a
``BigInt`` given as an int or a string (accepted, not checked: one environment per
server), lists and required strings are never null. Metadata comes from MetricFlow's engine
(`list_metrics`, `simple_dimensions_for_metrics`, `entities_for_metrics`,
`list_saved_queries`) and is computed once per published version (`Catalog`).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    build_schema,
    execute_sync,
    parse,
    validate,
)
from graphql.language import IntValueNode, StringValueNode, ValueNode
from metricflow.engine.models import Dimension as MfDimension
from metricflow.engine.models import Entity as MfEntity
from metricflow_semantic_interfaces.references import MetricReference
from metricflow_semantic_interfaces.type_enums import DimensionType, MetricType
from metricflow_semantic_interfaces.type_enums.time_granularity import TimeGranularity
from metricflow_semantics.model.semantics.metric_lookup import MetricLookup

from greenery import filters
from greenery.semantic import SemanticLayer

if TYPE_CHECKING:
    from greenery.server import QueryJob, QueryRequest, SemanticLayerService

log = logging.getLogger("greenery.server")

SCHEMA_SDL = """
scalar BigInt

enum MetricType { SIMPLE RATIO CUMULATIVE DERIVED CONVERSION }
enum DimensionType { CATEGORICAL TIME }
enum EntityType { FOREIGN NATURAL PRIMARY UNIQUE }
enum AggregationType { SUM MIN MAX COUNT_DISTINCT SUM_BOOLEAN AVERAGE PERCENTILE MEDIAN COUNT }
enum QueryStatus { PENDING RUNNING COMPILED SUCCESSFUL FAILED }
enum SqlEngine { BIGQUERY DATABRICKS DUCKDB POSTGRES REDSHIFT SNOWFLAKE TRINO }
enum SqlDialect {
  ATHENA APACHE_SPARK BIGQUERY DATABRICKS DATABRICKS_SPARK DUCKDB FABRIC POSTGRES REDSHIFT SNOWFLAKE
  SYNAPSE TERADATA TRINO
}
enum TimeGranularity {
  NANOSECOND MICROSECOND MILLISECOND SECOND MINUTE HOUR DAY WEEK MONTH QUARTER YEAR
}
enum DatePart { DOY DOW DAY MONTH QUARTER YEAR }
enum ExportDestinationType { TABLE VIEW }
"How jsonResult lays out a page (pandas DataFrame.to_json orients)."
enum PandasJsonOrient { TABLE RECORDS SPLIT INDEX COLUMNS VALUES }

type Dimension {
  name: String!
  qualifiedName: String!
  description: String
  type: DimensionType!
  label: String
  isPartition: Boolean!
  expr: String
  queryableGranularities: [TimeGranularity!]!
  queryableTimeGranularities: [String!]!
}

type Measure {
  name: String!
  aggTimeDimension: String
  agg: AggregationType!
  expr: String!
}

type Entity {
  name: String!
  description: String
  type: EntityType!
  role: String!
  expr: String!
}

type Metric {
  name: String!
  description: String
  type: MetricType!
  queryableGranularities: [TimeGranularity!]!
  queryableTimeGranularities: [String!]!
  label: String!
  requiresMetricTime: Boolean!
  dimensions: [Dimension!]!
  measures: [Measure!]!
  entities: [Entity!]!
}

type SavedQueryMetricParam { name: String! }
type SavedQueryGroupByParam {
  name: String!
  grain: TimeGranularity
  timeGranularity: String
  datePart: DatePart
}
type WhereFilter { whereSqlTemplate: String! }
type SavedQueryQueryParams {
  metrics: [SavedQueryMetricParam!]!
  groupBy: [SavedQueryGroupByParam!]!
  where: WhereFilter
}
type ExportConfig { alias: String schema: String exportAs: ExportDestinationType! }
type Export { name: String! config: ExportConfig! }
type SavedQuery {
  name: String!
  description: String
  label: String
  queryParams: SavedQueryQueryParams!
  exports: [Export!]!
}

type EnvironmentInfo {
  sqlDialect: SqlDialect!
  hasMetricsDefined: Boolean!
  dialect: SqlEngine!
  dialectSupportedBySlg: Boolean!
}

type CompileSqlResult { sql: String! }
type CreateQueryResult { queryId: String! }
type CancelQueryResult { queryId: String! }

type QueryResult {
  queryId: String!
  status: QueryStatus!
  sql: String
  error: String
  "Pages of 1024 rows; at least 1 once the query succeeded."
  totalPages: Int
  "The page as one Arrow IPC stream, base64 (schema only when there are no rows)."
  arrowResult: String
  "The page as pandas JSON (orient TABLE by default), base64 of the text in `encoding`."
  jsonResult(orient: PandasJsonOrient = TABLE, encoding: String = "utf-8"): String
}

input MetricInput { name: String! alias: String }
input GroupByInput { name: String! grain: TimeGranularity timeGranularity: String datePart: DatePart }
input WhereInput { sql: String! }
input OrderByInput { metric: MetricInput groupBy: GroupByInput descending: Boolean }

type Query {
  metrics(environmentId: BigInt!): [Metric!]!
  dimensions(environmentId: BigInt!, metrics: [MetricInput!]): [Dimension!]!
  measures(environmentId: BigInt!, metrics: [MetricInput!]): [Measure!]!
  entities(environmentId: BigInt!, metrics: [MetricInput!]): [Entity!]!
  savedQueries(environmentId: BigInt!): [SavedQuery!]!
  environmentInfo(environmentId: BigInt!): EnvironmentInfo!
  query(environmentId: BigInt!, queryId: String!, pageNum: Int = 1): QueryResult!
  "Also a query field, for clients that send compileSql as a query."
  compileSql(
    environmentId: BigInt!, savedQuery: String, metrics: [MetricInput!], groupBy: [GroupByInput!],
    where: [WhereInput!], orderBy: [OrderByInput!], limit: Int, readCache: Boolean
  ): CompileSqlResult!
}

type Mutation {
  createQuery(
    environmentId: BigInt!, savedQuery: String, metrics: [MetricInput!], groupBy: [GroupByInput!],
    where: [WhereInput!], orderBy: [OrderByInput!], limit: Int, readCache: Boolean
  ): CreateQueryResult!
  compileSql(
    environmentId: BigInt!, savedQuery: String, metrics: [MetricInput!], groupBy: [GroupByInput!],
    where: [WhereInput!], orderBy: [OrderByInput!], limit: Int, readCache: Boolean
  ): CompileSqlResult!
  cancelQuery(environmentId: BigInt!, queryId: String!): CancelQueryResult!
}
"""

_STANDARD_GRAINS = sorted(TimeGranularity, key=lambda g: g.to_int())
_DOCUMENT_CACHE_SIZE = 128
Json = dict[str, Any]


# ---- metadata ----------------------------------------------------------------------------


def _grain_name(grain: object) -> str:
    """A grain as a lower-case name, whether MetricFlow gives an enum, a custom grain or a string."""
    if isinstance(grain, TimeGranularity):
        return grain.value
    return str(getattr(grain, "name", grain)).lower()


def _grains_from(smallest: object, custom: Sequence[str]) -> tuple[list[str], list[str]]:
    """(TimeGranularity enum names, grain names incl. custom ones) queryable from `smallest` up."""
    floor = next((g.to_int() for g in _STANDARD_GRAINS if g.value == _grain_name(smallest)), 0)
    standard = [g for g in _STANDARD_GRAINS if g.to_int() >= floor]
    return [g.name for g in standard], [g.value for g in standard] + list(custom)


class Catalog:
    """The metadata of one published version, as the GraphQL API returns it (built once)."""

    def __init__(self, layer: SemanticLayer, engine_lock: threading.Lock) -> None:
        self._engine = layer.engine
        self._lookup = layer.lookup
        self._lock = engine_lock
        manifest = layer.lookup.semantic_manifest
        self._custom_grains = [
            g.name for spine in manifest.project_configuration.time_spines for g in spine.custom_granularities
        ]
        self._measures: dict[str, Json] = {
            measure.name: {
                "name": measure.name,
                "aggTimeDimension": measure.agg_time_dimension
                or (model.defaults.agg_time_dimension if model.defaults else None),
                "agg": measure.agg.value.upper(),
                "expr": measure.expr or measure.name,
            }
            for model in manifest.semantic_models
            for measure in model.measures
        }
        with self._lock:
            self.metrics: list[Json] = [
                self._metric(m) for m in self._engine.list_metrics(include_dimensions=True)
            ]
            self.saved_queries: list[Json] = [self._saved_query(q) for q in self._engine.list_saved_queries()]
        self._by_name = {m["name"]: m for m in self.metrics}
        self.environment_info: Json = {
            "sqlDialect": layer.client.sql_engine_type.name,
            "hasMetricsDefined": bool(self.metrics),
            "dialect": layer.client.sql_engine_type.name,
            "dialectSupportedBySlg": True,
        }

    def dimensions(self, metric_names: Sequence[str]) -> list[Json]:
        """Dimensions common to all the metrics (all dimensions when no metric is named)."""
        names = self._known(metric_names)
        if len(names) == 1:
            return self._by_name[names[0]]["dimensions"]
        with self._lock:
            found = self._engine.list_dimensions(metric_names=names or None)
        return self._unique([self._dimension(d) for d in found])

    def entities(self, metric_names: Sequence[str]) -> list[Json]:
        names = self._known(metric_names)
        if len(names) == 1:
            return self._by_name[names[0]]["entities"]
        with self._lock:
            found = self._engine.entities_for_metrics(names or [m["name"] for m in self.metrics])
        return self._unique([self._entity(e) for e in found])

    def measures(self, metric_names: Sequence[str]) -> list[Json]:
        names = self._known(metric_names) or list(self._by_name)
        return self._unique([m for name in names for m in self._by_name[name]["measures"]])

    def _known(self, metric_names: Sequence[str]) -> list[str]:
        unknown = [n for n in metric_names if n not in self._by_name]
        if unknown:
            known = ", ".join(sorted(self._by_name))
            raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {known}")
        return list(dict.fromkeys(metric_names))

    @staticmethod
    def _unique(items: list[Json]) -> list[Json]:
        """The first item of each name, in order (MetricFlow lists some once per semantic model)."""
        first: dict[str, Json] = {}
        for item in items:
            first.setdefault(item["name"], item)
        return list(first.values())

    def _metric(self, metric: Any) -> Json:
        reference = MetricReference(metric.name)
        smallest = self._lookup.metric_lookup.get_min_queryable_time_granularity(reference)
        enum_grains, grains = _grains_from(smallest, self._custom_grains)
        pydantic = self._lookup.metric_lookup.get_metric(reference)
        return {
            "name": metric.name,
            "description": metric.description,
            "type": metric.type.value.upper(),
            "queryableGranularities": enum_grains,
            "queryableTimeGranularities": grains,
            "label": metric.label or metric.name,
            "requiresMetricTime": self._requires_metric_time(metric.name),
            "dimensions": self._unique([self._dimension(d) for d in metric.dimensions]),
            "measures": [
                self._measures[m.name]
                for m in pydantic.type_params.input_measures
                if m.name in self._measures
            ],
            "entities": self._unique(
                [self._entity(e) for e in self._engine.entities_for_metrics([metric.name])]
            ),
        }

    def _requires_metric_time(self, name: str) -> bool:
        """Whether MetricFlow refuses the metric without metric_time (offsets, windowed cumulative)."""
        metric = self._lookup.metric_lookup.get_metric(MetricReference(name))
        params = metric.type_params
        if metric.type is MetricType.CUMULATIVE:
            cumulative = params.cumulative_type_params
            if (
                params.window
                or params.grain_to_date
                or (cumulative and (cumulative.window or cumulative.grain_to_date))
            ):
                return True
        if metric.type is MetricType.DERIVED and any(
            i.offset_window is not None or i.offset_to_grain is not None for i in metric.input_metrics
        ):
            return True
        inputs = MetricLookup.metric_inputs(metric, include_conversion_metric_input=False)
        return any(self._requires_metric_time(i.name) for i in inputs)

    def _dimension(self, dimension: MfDimension) -> Json:
        enum_grains, grains = (
            _grains_from(dimension.type_params.time_granularity, self._custom_grains)
            if dimension.type is DimensionType.TIME and dimension.type_params is not None
            else ([], [])
        )
        name = dimension.granularity_free_dunder_name
        return {
            "name": name,
            "qualifiedName": name,
            "description": dimension.description,
            "type": dimension.type.value.upper(),
            "label": dimension.label,
            "isPartition": dimension.is_partition,
            "expr": dimension.expr,
            "queryableGranularities": enum_grains,
            "queryableTimeGranularities": grains,
        }

    @staticmethod
    def _entity(entity: MfEntity) -> Json:
        return {
            "name": entity.name,
            "description": entity.description,
            "type": entity.type.value.upper(),
            "role": entity.role or entity.name,
            "expr": entity.expr or entity.name,
        }

    @staticmethod
    def _saved_query(query: Any) -> Json:
        params = query.query_params
        where = [f.where_sql_template for f in params.where.where_filters] if params.where else []
        return {
            "name": query.name,
            "description": query.description,
            "label": query.label,
            "queryParams": {
                "metrics": [{"name": m} for m in params.metrics],
                "groupBy": [_saved_group_by(g) for g in params.group_by],
                "where": {
                    "whereSqlTemplate": " AND ".join(f"({w})" for w in where) if len(where) > 1 else where[0]
                }
                if where
                else None,
            },
            "exports": [
                {
                    "name": export.name,
                    "config": {
                        "alias": export.config.alias,
                        "schema": export.config.schema_name,
                        "exportAs": export.config.export_as.value.upper(),
                    },
                }
                for export in query.exports
            ],
        }


def _saved_group_by(text: str) -> Json:
    """``TimeDimension('metric_time', 'week')`` → name metric_time, grain WEEK, timeGranularity week."""
    try:
        reference = filters.parse_reference(text)
    except ValueError:  # not the object syntax: a plain name such as ``metric_time__week``
        return {"name": text.strip(), "grain": None, "timeGranularity": None, "datePart": None}
    grain = reference.grain.lower() if reference.grain else None
    standard = {g.value for g in TimeGranularity}
    return {
        "name": reference.name,
        "grain": grain.upper() if grain in standard else None,
        "timeGranularity": grain,
        "datePart": reference.date_part.upper() if reference.date_part else None,
    }


# ---- query inputs and results -----------------------------------------------------------


def _group_by_name(item: Json) -> str:
    """``{name: metric_time, timeGranularity: week}`` (or the ``grain`` enum) → ``metric_time__week``."""
    name = item["name"]
    grain = item.get("timeGranularity") or item.get("grain")
    if grain:
        name = f"{name}__{grain.lower()}"
    if item.get("datePart"):
        name = f"{name}__extract_{item['datePart'].lower()}"
    return name


def _order_by_name(item: Json) -> str:
    metric, group_by = item.get("metric"), item.get("groupBy")
    if (metric is None) == (group_by is None):
        raise ValueError("each orderBy item needs exactly one of metric or groupBy")
    name = metric["name"] if metric is not None else _group_by_name(group_by)
    return f"-{name}" if item.get("descending") else name


def query_request(args: Json) -> QueryRequest:
    """The QueryRequest for createQuery / compileSql arguments."""
    from greenery.server import QueryRequest

    metrics = args.get("metrics") or []
    return QueryRequest(
        metrics=tuple(m["name"] for m in metrics),
        group_by=tuple(_group_by_name(g) for g in args.get("groupBy") or []),
        where=tuple(w["sql"] for w in args.get("where") or []),
        order_by=tuple(_order_by_name(o) for o in args.get("orderBy") or []),
        limit=args.get("limit"),
        saved_query=args.get("savedQuery"),
        aliases=tuple((m["name"], m["alias"]) for m in metrics if m.get("alias")),
    )


def _json_ready(table: pa.Table) -> pd.DataFrame:
    """Decimals as integers (scale 0, when they fit) or floats, so JSON carries numbers, not strings."""
    columns = []
    for column in table.columns:
        if pa.types.is_decimal(column.type):
            try:
                column = column.cast(pa.int64() if column.type.scale == 0 else pa.float64())
            except pa.ArrowInvalid:
                column = column.cast(pa.float64(), safe=False)
        columns.append(column)
    converted = pa.table(columns, names=table.column_names)
    return converted.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def json_page(page: pa.Table, orient: str, encoding: str) -> str:
    orient = orient.lower()
    frame = _json_ready(page)
    text = frame.to_json(
        orient=orient, date_format="iso", **({"index": False} if orient in ("table", "split") else {})
    )
    return base64.b64encode(text.encode(encoding)).decode("ascii")


@dataclass(frozen=True)
class PageView:
    """What the `query` field returns: one page of one job."""

    job: QueryJob
    page: int


def _page_field(getter: Callable[[PageView], Any]) -> Callable[..., Any]:
    def resolve(view: PageView, info: Any, **_: Any) -> Any:
        return getter(view)

    return resolve


def _arrow_result(view: PageView) -> str | None:
    from greenery.server import arrow_stream_base64

    if view.job.status != "SUCCESSFUL":
        return None
    return arrow_stream_base64(view.job.page(view.page))


def _json_result(view: PageView, info: Any, orient: str = "TABLE", encoding: str = "utf-8") -> str | None:
    if view.job.status != "SUCCESSFUL":
        return None
    try:
        return json_page(view.job.page(view.page), orient, encoding)
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r} (try utf-8)") from None


# ---- the schema and its resolvers -------------------------------------------------------


def _parse_big_int(value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, str))
        or not str(value).strip().lstrip("-").isdigit()
    ):
        raise TypeError(f"environmentId must be an integer or a string of digits (got {value!r})")
    return int(value)


def _parse_big_int_literal(node: ValueNode, _variables: Any = None) -> int:
    if isinstance(node, (IntValueNode, StringValueNode)):
        return _parse_big_int(node.value)
    raise TypeError("environmentId must be an integer or a string of digits")


class GraphQLApi:
    """Executes GraphQL requests against a SemanticLayerService."""

    def __init__(self, service: SemanticLayerService) -> None:
        self._service = service
        self.schema = self._build_schema()
        self._documents: OrderedDict[str, DocumentNode | list[GraphQLError]] = OrderedDict()
        self._documents_lock = threading.Lock()

    def _build_schema(self) -> GraphQLSchema:
        schema = build_schema(SCHEMA_SDL)
        big_int = schema.type_map["BigInt"]
        big_int.parse_value = _parse_big_int  # type: ignore[attr-defined]
        big_int.parse_literal = _parse_big_int_literal  # type: ignore[attr-defined]
        big_int.serialize = int  # type: ignore[attr-defined]
        resolvers: dict[str, dict[str, Callable[..., Any]]] = {
            "Query": {
                "metrics": self._metrics,
                "dimensions": self._dimensions,
                "measures": self._measures,
                "entities": self._entities,
                "savedQueries": self._saved_queries,
                "environmentInfo": self._environment_info,
                "query": self._query,
                "compileSql": self._compile_sql,
            },
            "Mutation": {
                "createQuery": self._create_query,
                "compileSql": self._compile_sql,
                "cancelQuery": self._cancel_query,
            },
            "QueryResult": {
                "queryId": _page_field(lambda v: v.job.id),
                "status": _page_field(lambda v: v.job.status),
                "sql": _page_field(lambda v: v.job.sql),
                "error": _page_field(lambda v: v.job.error),
                "totalPages": _page_field(lambda v: v.job.total_pages),
                "arrowResult": _page_field(_arrow_result),
                "jsonResult": _json_result,
            },
        }
        for type_name, fields in resolvers.items():
            graphql_type = schema.type_map[type_name]
            for field_name, resolver in fields.items():
                graphql_type.fields[field_name].resolve = resolver  # type: ignore[attr-defined]
        return schema

    def execute(self, query: str, variables: Json | None, operation_name: str | None) -> Json:
        """Run one GraphQL request; the answer as the JSON body ({data, errors})."""
        start = time.perf_counter()
        document = self._document(query)
        if isinstance(document, list):
            return {"data": None, "errors": [e.formatted for e in document]}
        context: Json = {}
        result = execute_sync(
            self.schema,
            document,
            variable_values=variables,
            operation_name=operation_name,
            context_value=context,
        )
        body: Json = {"data": result.data}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
            for error in result.errors:
                if error.original_error and not isinstance(error.original_error, (ValueError, TypeError)):
                    log.warning("graphql error: %r", error.original_error)
        operation = context.get("operation", "graphql")
        level = logging.INFO if operation == "compileSql" else logging.DEBUG
        log.log(
            level, "%s%s ms=%.0f", operation, context.get("detail", ""), (time.perf_counter() - start) * 1000
        )
        return body

    def _document(self, query: str) -> DocumentNode | list[GraphQLError]:
        """The parsed and validated document (the same few query texts come again and again)."""
        with self._documents_lock:
            cached = self._documents.get(query)
            if cached is not None:
                self._documents.move_to_end(query)
                return cached
        try:
            document: DocumentNode | list[GraphQLError] = parse(query)
        except GraphQLError as error:
            return [error]
        errors = validate(self.schema, document)
        if errors:
            return errors
        with self._documents_lock:
            self._documents[query] = document
            if len(self._documents) > _DOCUMENT_CACHE_SIZE:
                self._documents.popitem(last=False)
        return document

    # -- resolvers (graphql-core calls them with the root value, info and the arguments) --

    def _catalog_call(self, info: Any, operation: str, call: Callable[[Any], Any]) -> Any:
        info.context["operation"] = operation
        with self._service.layers.use() as layer:
            return call(layer.catalog)

    def _metrics(self, _root: Any, info: Any, **_: Any) -> list[Json]:
        return self._catalog_call(info, "metrics", lambda c: c.metrics)

    def _dimensions(self, _root: Any, info: Any, metrics: list[Json] | None = None, **_: Any) -> list[Json]:
        return self._catalog_call(
            info, "dimensions", lambda c: c.dimensions([m["name"] for m in metrics or []])
        )

    def _measures(self, _root: Any, info: Any, metrics: list[Json] | None = None, **_: Any) -> list[Json]:
        return self._catalog_call(info, "measures", lambda c: c.measures([m["name"] for m in metrics or []]))

    def _entities(self, _root: Any, info: Any, metrics: list[Json] | None = None, **_: Any) -> list[Json]:
        return self._catalog_call(info, "entities", lambda c: c.entities([m["name"] for m in metrics or []]))

    def _saved_queries(self, _root: Any, info: Any, **_: Any) -> list[Json]:
        return self._catalog_call(info, "savedQueries", lambda c: c.saved_queries)

    def _environment_info(self, _root: Any, info: Any, **_: Any) -> Json:
        return self._catalog_call(info, "environmentInfo", lambda c: c.environment_info)

    def _compile_sql(self, _root: Any, info: Any, **args: Any) -> Json:
        request = query_request(args)
        info.context["operation"] = "compileSql"
        info.context["detail"] = f" metrics={request.describe()}"
        return {"sql": self._service.compile_sql(request)}

    def _create_query(self, _root: Any, info: Any, **args: Any) -> Json:
        try:
            request = query_request(args)
        except ValueError as exc:
            from greenery.server import QueryRequest

            job = self._service.failed_query(QueryRequest(), str(exc))
        else:
            job = self._service.create_query(request, read_cache=args.get("readCache") is not False)
        info.context["operation"] = "createQuery"
        info.context["detail"] = f" id={job.id[:8]} status={job.status}"
        return {"queryId": job.id}

    def _query(self, _root: Any, info: Any, queryId: str, pageNum: int | None = None, **_: Any) -> PageView:
        job = self._service.get_query(queryId)
        page = pageNum or 1
        if job.status == "SUCCESSFUL":
            job.page(page)  # raises for a page that does not exist
        info.context["operation"] = "query"
        info.context["detail"] = f" id={queryId[:8]} page={page} status={job.status}"
        return PageView(job, page)

    def _cancel_query(self, _root: Any, info: Any, queryId: str, **_: Any) -> Json:
        job = self._service.cancel_query(queryId)
        info.context["operation"] = "cancelQuery"
        return {"queryId": job.id}

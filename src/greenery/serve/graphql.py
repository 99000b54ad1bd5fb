"""The dbt Semantic Layer GraphQL API: schema and resolvers over the query service.

Field names, argument types and enum values are the ones `dbt-sl-sdk` sends and decodes
(checked with the real client in tests/test_server.py): list arguments are nullable, ``environmentId`` is a
``BigInt`` given as an int or a string (accepted, not checked: one environment per
server), lists and required strings are never null. Metadata comes from the published
version's `Catalog`.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
from graphql.language import FieldNode, IntValueNode, OperationDefinitionNode, StringValueNode, ValueNode

from greenery.semantic.cache import Lru
from greenery.serve.catalog import Catalog, Json, page
from greenery.serve.service import TOO_COMPLEX, QueryJob, QueryRequest, SemanticLayerService

log = logging.getLogger("greenery.serve")

SCHEMA_SDL = """
scalar BigInt
"Any JSON value (the YAML's meta: blocks)."
scalar JSON

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
  config: ElementConfig!
}

"An element's config as dbt's API gives it: meta is the YAML's meta: block ({} when none)."
type ElementConfig { meta: JSON! }

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
  config: ElementConfig!
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
  config: ElementConfig!
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

"One page of a searched list (pageNum counts from 1)."
type MetricPage { pageNum: Int! pageSize: Int! totalItems: Int! totalPages: Int! items: [Metric!]! }
type DimensionPage { pageNum: Int! pageSize: Int! totalItems: Int! totalPages: Int! items: [Dimension!]! }
type EntityPage { pageNum: Int! pageSize: Int! totalItems: Int! totalPages: Int! items: [Entity!]! }
type MeasurePage { pageNum: Int! pageSize: Int! totalItems: Int! totalPages: Int! items: [Measure!]! }
type SavedQueryPage { pageNum: Int! pageSize: Int! totalItems: Int! totalPages: Int! items: [SavedQuery!]! }

type Query {
  "Every metric, or those queryable by all of groupBy."
  metrics(environmentId: BigInt!, groupBy: [GroupByInput!]): [Metric!]!
  "search: a substring of name, label or description (case-insensitive); searchTerms: any of them."
  metricsPaginated(
    environmentId: BigInt!, search: String, searchTerms: [String!], groupBy: [GroupByInput!],
    pageNum: Int = 1, pageSize: Int = 100
  ): MetricPage!
  dimensionsPaginated(
    environmentId: BigInt!, metrics: [MetricInput!], search: String, pageNum: Int = 1, pageSize: Int = 100
  ): DimensionPage!
  entitiesPaginated(
    environmentId: BigInt!, metrics: [MetricInput!], search: String, pageNum: Int = 1, pageSize: Int = 100
  ): EntityPage!
  measuresPaginated(
    environmentId: BigInt!, metrics: [MetricInput!], search: String, pageNum: Int = 1, pageSize: Int = 100
  ): MeasurePage!
  savedQueriesPaginated(
    environmentId: BigInt!, search: String, pageNum: Int = 1, pageSize: Int = 100
  ): SavedQueryPage!
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

DOCUMENT_CACHE_ITEMS = 128  # parsed documents kept, by query text …
DOCUMENT_CACHE_BYTES = 32 * 1024 * 1024  # … within about this many bytes of memory
BYTES_PER_TOKEN = 400  # a parsed token with its AST node (measured: 310–390 bytes with graphql-core 3.2)
AT_ONCE_FIELDS = frozenset({"query", "createQuery"})  # root fields that never wait (see runs_at_once)
# Bounds on one document: what a client may send before anything runs.
MAX_TOKENS = 5_000
MAX_DEPTH = 12
MAX_ALIASES = 20
MAX_FIELDS = 500


def _document_size(query: str, document: DocumentNode) -> int:
    """About the bytes a parsed document holds on to: its query text, and its tokens with their nodes."""
    tokens, token = 0, document.loc.start_token if document.loc is not None else None
    while token is not None:
        tokens, token = tokens + 1, token.next
    return len(query) + BYTES_PER_TOKEN * tokens


def _shape_errors(document: DocumentNode) -> list[GraphQLError]:
    """Depth, aliases and fields of the document within bounds (dbt's clients need far less)."""
    depth = aliases = fields = 0
    stack = [(definition, 1) for definition in document.definitions]
    while stack:
        node, level = stack.pop()
        depth = max(depth, level)
        if isinstance(node, FieldNode):
            fields += 1
            aliases += node.alias is not None
        selection_set = getattr(node, "selection_set", None)
        if selection_set is not None:
            stack += [(child, level + 1) for child in selection_set.selections]
    for value, bound, what in (
        (depth, MAX_DEPTH, "levels deep"),
        (aliases, MAX_ALIASES, "aliases"),
        (fields, MAX_FIELDS, "fields"),
    ):
        if value > bound:
            return [GraphQLError(f"the query has more than {bound} {what} ({value}): ask for less at once")]
    return []


# ---- query inputs and results -----------------------------------------------------------


def _names(items: list[Json] | None) -> list[str]:
    """The names of MetricInput / GroupByInput items (grains aside)."""
    return [item["name"] for item in items or []]


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


def arrow_stream_base64(table: pa.Table) -> str:
    """One self-contained Arrow IPC stream (schema-only when the table has no rows), base64."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches():
            if batch.num_rows:
                writer.write_batch(batch)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def _arrow_result(view: PageView) -> str | None:
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


def _formatted(error: GraphQLError) -> Json:
    """The error as the client sees it; input too deep or too big says so (never a Python message)."""
    formatted = error.formatted
    if isinstance(error.original_error, (RecursionError, MemoryError)):
        formatted["message"] = TOO_COMPLEX
    return dict(formatted)


class GraphQLApi:
    """Executes GraphQL requests against a SemanticLayerService."""

    def __init__(self, service: SemanticLayerService) -> None:
        self._service = service
        self.schema = self._build_schema()
        self._documents: Lru[str, DocumentNode] = Lru(
            DOCUMENT_CACHE_ITEMS, DOCUMENT_CACHE_BYTES, _document_size
        )

    def _build_schema(self) -> GraphQLSchema:
        schema = build_schema(SCHEMA_SDL)
        big_int = schema.type_map["BigInt"]
        big_int.parse_value = _parse_big_int  # type: ignore[attr-defined]
        big_int.parse_literal = _parse_big_int_literal  # type: ignore[attr-defined]
        big_int.serialize = int  # type: ignore[attr-defined]
        schema.type_map["JSON"].serialize = lambda value: value  # type: ignore[attr-defined]
        resolvers: dict[str, dict[str, Callable[..., Any]]] = {
            "Query": {
                "metrics": self._metrics,
                "metricsPaginated": self._metrics_paginated,
                "dimensionsPaginated": self._paginated("dimensions", lambda c, names: c.dimensions(names)),
                "entitiesPaginated": self._paginated("entities", lambda c, names: c.entities(names)),
                "measuresPaginated": self._paginated("measures", lambda c, names: c.measures(names)),
                "savedQueriesPaginated": self._paginated("savedQueries", lambda c, _: c.saved_queries),
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

    def execute(
        self, query: str, variables: Json | None, operation_name: str | None
    ) -> tuple[Json, list[QueryJob]]:
        """Run one GraphQL request: the JSON body ({data, errors}), and the queries its createQuery
        fields started, which the caller waits for before answering (see greenery.serve.http)."""
        start = time.perf_counter()
        document = self._document(query)
        if isinstance(document, list):
            return {"data": None, "errors": [e.formatted for e in document]}, []
        context: Json = {"started": []}
        result = execute_sync(
            self.schema,
            document,
            variable_values=variables,
            operation_name=operation_name,
            context_value=context,
        )
        body: Json = {"data": result.data}
        if result.errors:
            body["errors"] = [_formatted(e) for e in result.errors]
            for error in result.errors:
                if error.original_error and not isinstance(
                    error.original_error, (ValueError, TypeError, RecursionError, MemoryError)
                ):
                    log.warning("graphql error: %r", error.original_error)
        operation = context.get("operation", "graphql")
        level = logging.INFO if operation == "compileSql" else logging.DEBUG
        log.log(
            level, "%s%s ms=%.0f", operation, context.get("detail", ""), (time.perf_counter() - start) * 1000
        )
        return body, context["started"]

    def runs_at_once(self, query: str, operation_name: str | None) -> bool:
        """Whether the request only polls kept queries or starts new ones (root fields `query`,
        `createQuery`; document parsed before): it neither waits nor compiles (MetricFlow compiles
        on the query's worker), so the HTTP server runs it without a thread hand-over."""
        document = self._documents.get(query)
        if document is None:
            return False
        operations = [
            d
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
            and (operation_name is None or (d.name is not None and d.name.value == operation_name))
        ]
        if len(operations) != 1:
            return False
        fields = operations[0].selection_set.selections
        return all(isinstance(field, FieldNode) and field.name.value in AT_ONCE_FIELDS for field in fields)

    def _document(self, query: str) -> DocumentNode | list[GraphQLError]:
        """The parsed, bounded and validated document (the same few query texts come again and again)."""
        cached = self._documents.get(query)
        if cached is not None:
            return cached
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
            errors = _shape_errors(document) or validate(self.schema, document)
        except GraphQLError as error:
            return [error]
        except RecursionError:
            return [GraphQLError(f"the query nests deeper than {MAX_DEPTH} levels")]
        if errors:
            return errors
        self._documents.put(query, document)
        return document

    # -- resolvers (graphql-core calls them with the root value, info and the arguments) --

    def _catalog_call(self, info: Any, operation: str, call: Callable[[Any], Any]) -> Any:
        info.context["operation"] = operation
        with self._service.layers.use() as layer:
            return call(layer.catalog)

    def _metrics(self, _root: Any, info: Any, groupBy: list[Json] | None = None, **_: Any) -> list[Json]:
        return self._catalog_call(info, "metrics", lambda c: c.metrics_for(_names(groupBy)))

    def _metrics_paginated(
        self,
        _root: Any,
        info: Any,
        groupBy: list[Json] | None = None,
        search: str | None = None,
        searchTerms: list[str] | None = None,
        pageNum: int = 1,
        pageSize: int = 100,
        **_: Any,
    ) -> Json:
        return self._catalog_call(
            info,
            "metricsPaginated",
            lambda c: page(
                c.metrics_for(_names(groupBy)),
                search=search,
                search_terms=searchTerms or (),
                page_num=pageNum,
                page_size=pageSize,
            ).as_json(),
        )

    def _paginated(self, kind: str, items: Callable[[Catalog, list[str]], list[Json]]) -> Callable[..., Json]:
        """A ``<kind>Paginated`` resolver: the catalog's list for the metrics, searched and paged."""

        def resolve(
            _root: Any,
            info: Any,
            metrics: list[Json] | None = None,
            search: str | None = None,
            pageNum: int = 1,
            pageSize: int = 100,
            **_: Any,
        ) -> Json:
            return self._catalog_call(
                info,
                f"{kind}Paginated",
                lambda c: page(
                    items(c, _names(metrics)), search=search, page_num=pageNum, page_size=pageSize
                ).as_json(),
            )

        return resolve

    def _dimensions(self, _root: Any, info: Any, metrics: list[Json] | None = None, **_: Any) -> list[Json]:
        return self._catalog_call(info, "dimensions", lambda c: c.dimensions(_names(metrics)))

    def _measures(self, _root: Any, info: Any, metrics: list[Json] | None = None, **_: Any) -> list[Json]:
        return self._catalog_call(info, "measures", lambda c: c.measures(_names(metrics)))

    def _entities(self, _root: Any, info: Any, metrics: list[Json] | None = None, **_: Any) -> list[Json]:
        return self._catalog_call(info, "entities", lambda c: c.entities(_names(metrics)))

    def _saved_queries(self, _root: Any, info: Any, **_: Any) -> list[Json]:
        return self._catalog_call(info, "savedQueries", lambda c: c.saved_queries)

    def _environment_info(self, _root: Any, info: Any, **_: Any) -> Json:
        return self._catalog_call(info, "environmentInfo", lambda c: c.environment_info)

    def _compile_sql(self, _root: Any, info: Any, **args: Any) -> Json:
        request = query_request(args)
        info.context["operation"] = "compileSql"
        info.context["detail"] = f" metrics={request.describe()}"
        return {"sql": self._service.compile_sql(request, read_cache=args.get("readCache") is not False)}

    def _create_query(self, _root: Any, info: Any, **args: Any) -> Json:
        try:
            request = query_request(args)
        except ValueError as exc:
            job = self._service.failed_query(QueryRequest(), str(exc))
        else:
            read_cache = args.get("readCache") is not False
            job = self._service.create_query(request, read_cache=read_cache)
            info.context["started"].append(job)
        info.context["operation"] = "createQuery"
        info.context["detail"] = f" id={job.id[:8]}"
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

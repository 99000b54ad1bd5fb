"""The semantic layer in-process: a warm MetricFlow engine over a read-only DuckDB warehouse.

`mf query` pays dbt's start-up on every call; this loads the semantic manifest once and
answers each query in milliseconds. Queries are compiled by MetricFlow and run read-only;
results come back as Arrow tables.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Self

import duckdb
import pyarrow as pa
from metricflow.data_table.mf_table import MetricFlowDataTable
from metricflow.engine.metricflow_engine import MetricFlowEngine
from metricflow.protocols.sql_client import SqlEngine
from metricflow.sql.render.duckdb_renderer import DuckDbSqlPlanRenderer
from metricflow.sql.render.sql_plan_renderer import SqlPlanRenderer
from metricflow_semantics.model.dbt_manifest_parser import parse_manifest_from_dbt_generated_manifest
from metricflow_semantics.model.semantic_manifest_lookup import SemanticManifestLookup
from metricflow_semantics.sql.sql_bind_parameters import SqlBindParameterSet

from greenery.semantic.cache import Lru
from greenery.semantic.compat import query_request, quote_reserved_identifiers, reserved_words
from greenery.semantic.optimize import merge_twin_aggregations
from greenery.semantic.prepared import StatementRunner
from greenery.warehouse import store
from greenery.warehouse.dbt import MANIFEST_PATH
from greenery.warehouse.publish import current_published

NO_PARAMS = SqlBindParameterSet()
KEEP_COMPILED = 1024  # compiled SQL kept per engine …
KEEP_COMPILED_CHARS = 32 * 1024 * 1024  # … within this many characters of SQL and query text
TOO_DEEP = "the query is too large or too deeply nested to compile: ask for less at once"
TOO_BIG = (
    "the query needs more memory than the warehouse may use: group by fewer columns (an entity "
    "such as session or event makes a row of each one), a coarser time grain, or filter it"
)


class SemanticLayerError(ValueError):
    """A query the semantic layer cannot answer; the message is MetricFlow's or names the input."""


class QueryInterrupted(SemanticLayerError):
    """A query stopped at its time limit (the message says which)."""


class QueryOutOfMemory(SemanticLayerError):
    """A query over the warehouse's memory limit (the message says what to ask for instead)."""


def _cells(cursor: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    """A cursor's rows as MetricFlow's table takes them: a uuid id (macros/id_type.sql) as its
    text. Only a result with a uuid column is copied."""
    rows = cursor.fetchall()
    if not any(str(d[1]) == "UUID" for d in cursor.description):
        return rows
    return [tuple(str(cell) if isinstance(cell, uuid.UUID) else cell for cell in row) for row in rows]


class DuckDbClient:
    """MetricFlow's SqlClient over one DuckDB connection (calls may overlap: each takes a cursor)."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        single_threaded: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self._con = connection
        self._single_threaded = single_threaded
        self._renderer = DuckDbSqlPlanRenderer()
        self._statements = StatementRunner(connection, single_threaded)

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        return self._con

    @property
    def sql_engine_type(self) -> SqlEngine:
        return SqlEngine.DUCKDB

    @property
    def sql_plan_renderer(self) -> SqlPlanRenderer:
        return self._renderer

    def arrow(self, stmt: str, timeout_s: float | None = None) -> pa.Table:
        """The rows of one statement; after `timeout_s` DuckDB is interrupted (QueryInterrupted)."""
        try:
            return self._statements.arrow(stmt, timeout_s)
        except duckdb.InterruptException:
            raise QueryInterrupted(f"the query ran longer than {timeout_s:g} s and was stopped") from None

    def query(
        self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet = NO_PARAMS
    ) -> MetricFlowDataTable:
        with self._con.cursor() as cursor:
            cursor.execute(stmt)
            columns = [d[0] for d in cursor.description]
            return MetricFlowDataTable.create_from_rows(column_names=columns, rows=_cells(cursor))

    def execute(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet = NO_PARAMS) -> None:
        with self._con.cursor() as cursor:
            cursor.execute(stmt)

    def dry_run(self, stmt: str, sql_bind_parameter_set: SqlBindParameterSet = NO_PARAMS) -> None:
        with self._con.cursor() as cursor:
            cursor.execute(f"EXPLAIN {stmt}")

    def close(self) -> None:
        self._statements.close()
        self._con.close()
        if self._single_threaded is not None:
            self._single_threaded.close()

    def render_bind_parameter_key(self, bind_parameter_key: str) -> str:
        return f"${bind_parameter_key}"


@dataclass
class CompileStats:
    """What the compile cache did: queries MetricFlow planned (and how long it took), cache hits."""

    compiled: int = 0
    seconds: float = 0.0
    hits: int = 0

    @property
    def saved_seconds(self) -> float:
        """Planning time the hits did not spend, at the mean time of a plan."""
        return self.hits * self.seconds / self.compiled if self.compiled else 0.0


@dataclass(frozen=True)
class QueryResult:
    """A semantic-layer answer: the SQL MetricFlow wrote, the rows, and how long it took."""

    sql: str
    table: pa.Table
    seconds: float = field(compare=False)


def _manifest_database(manifest_json: str) -> str:
    """The warehouse database the semantic models point at (the catalog their SQL names)."""
    models = json.loads(manifest_json)["semantic_models"]
    return models[0]["node_relation"]["database"]


# A reader's DuckDB, once its warehouse is attached: answers in no order but the one a query
# asks for (so a prepared statement's scan runs in parallel too: see greenery.semantic.prepared);
# no files, no network, no extensions, and no way to change that (or anything else) later. Only
# the queries MetricFlow writes run there.
READER_SETTINGS = (
    "SET preserve_insertion_order = false",
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET lock_configuration = true",
)


# The second reader a read-only layer opens, for the smallest queries (see
# greenery.semantic.prepared): one thread; they need little memory and never spill.
SINGLE_THREAD_READER = {"threads": "1", "memory_limit": "256MB", "temp_directory": ""}


def _open_warehouse(
    path: Path, database: str, read_only: bool, **overrides: str
) -> duckdb.DuckDBPyConnection:
    """A DuckDB with the warehouse at `path` attached (and used) as `database`; read-only, a reader."""
    con = store.open_duckdb(warehouse_file=path, **overrides)
    con.execute(f"ATTACH '{path}' AS \"{database}\"{' (READ_ONLY)' if read_only else ''}")
    con.execute(f'USE "{database}"')
    if read_only:
        for statement in READER_SETTINGS:
            con.execute(statement)
    return con


class MetricQuery(NamedTuple):
    """A query as MetricFlow takes it, its lists as tuples: the key its compiled SQL is cached
    under (here, and by whatever else decides per query, e.g. the declarative cache)."""

    metrics: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    where: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()
    limit: int | None = None
    saved_query: str | None = None


def _compiled_size(key: tuple[object, ...], sql: str) -> int:
    """Characters a compiled query holds on to: its SQL and (about) the text of its request."""
    return len(sql) + len(repr(key))


class SemanticLayer:
    """A warm MetricFlow engine over a DuckDB warehouse, read-only unless asked otherwise.

    The warehouse file may be a copy under any name: it is attached under the database name
    the semantic manifest uses, so MetricFlow's SQL finds its tables.
    """

    def __init__(
        self,
        warehouse_file: Path | None = None,
        manifest_path: Path = MANIFEST_PATH,
        *,
        read_only: bool = True,
    ) -> None:
        if not manifest_path.is_file():
            raise SemanticLayerError(f"no semantic manifest at {manifest_path}: run `dbt parse` first")
        manifest_json = manifest_path.read_text()
        database = _manifest_database(manifest_json)
        path = store.resolve(warehouse_file)
        if not path.is_file():
            raise SemanticLayerError(f"no warehouse at {path}: run `make demo` or `greenery build` first")
        con = _open_warehouse(path, database, read_only)
        single = _open_warehouse(path, database, read_only, **SINGLE_THREAD_READER) if read_only else None
        self.path = path
        self.manifest_path = manifest_path
        self.manifest_sha256 = hashlib.sha256(manifest_json.encode()).hexdigest()
        self.client = DuckDbClient(con, single)
        self.lookup = SemanticManifestLookup(parse_manifest_from_dbt_generated_manifest(manifest_json))
        self.engine = MetricFlowEngine(semantic_manifest_lookup=self.lookup, sql_client=self.client)
        self.engine_lock = threading.Lock()  # MetricFlow's engine is not documented thread-safe
        self._compiled: Lru[tuple[object, ...], str] = Lru(KEEP_COMPILED, KEEP_COMPILED_CHARS, _compiled_size)
        self.compile_stats = CompileStats()
        manifest = self.lookup.semantic_manifest
        self._reserved_names = reserved_words(
            element.name
            for model in manifest.semantic_models
            for element in (*model.entities, *model.dimensions, *model.measures)
        )

    @classmethod
    def published(cls, warehouse_file: Path | None = None) -> SemanticLayer:
        """Read-only over the newest published copy of the warehouse (see greenery.warehouse.publish)."""
        folder = current_published(warehouse_file)
        if folder is None:
            raise SemanticLayerError("nothing published yet: run `make demo` (or `greenery publish`) first")
        return cls(folder / store.resolve(warehouse_file).name, folder / MANIFEST_PATH.name)

    @property
    def saved_query_names(self) -> list[str]:
        return sorted(q.name for q in self.lookup.semantic_manifest.saved_queries)

    @property
    def metric_names(self) -> list[str]:
        return sorted(m.name for m in self.lookup.semantic_manifest.metrics)

    def compile(
        self,
        *,
        metrics: Sequence[str] = (),
        group_by: Sequence[str] = (),
        where: Sequence[str] = (),
        order_by: Sequence[str] = (),
        limit: int | None = None,
        saved_query: str | None = None,
    ) -> str:
        """The SQL MetricFlow writes for the query (raises SemanticLayerError with its message).

        Each distinct query is compiled once (MetricFlow takes 15–40 ms to plan one): every
        caller (the server's transports, exports, benchmarks) shares the cache of its layer; a
        query compiled before is answered without waiting for the engine.
        """
        query = MetricQuery(
            tuple(metrics), tuple(group_by), tuple(where), tuple(order_by), limit, saved_query
        )

        def plan() -> str:
            if saved_query is not None and saved_query not in self.saved_query_names:
                known = ", ".join(self.saved_query_names)
                raise SemanticLayerError(f"unknown saved query {saved_query!r} (known: {known})")
            request = query_request(
                saved_query=saved_query,
                metrics=metrics,
                group_by=group_by,
                where=where,
                order_by=order_by,
                limit=limit,
            )
            return self.engine.explain(request).sql_statement.without_descriptions.sql

        return self._compile_once(query, plan)

    def compiled(self, query: MetricQuery) -> str | None:
        """The SQL of a query compiled before, else None; never waits."""
        return self._compiled.get(query)

    def compile_dimension_values(self, group_by: str, metrics: Sequence[str] = ()) -> str:
        """The SQL MetricFlow writes for the distinct values of one dimension (for the metrics, if any),
        compiled once per distinct request like `compile`."""

        def plan() -> str:
            explained = self.engine.explain_get_dimension_values(
                metric_names=list(metrics) or None, get_group_by_values=group_by
            )
            return explained.sql_statement.without_descriptions.sql

        return self._compile_once(("dimension values", group_by, tuple(metrics)), plan)

    def _compile_once(self, key: tuple[object, ...], plan: Callable[[], str]) -> str:
        """The SQL cached under `key`, else what MetricFlow `plan`s (under the engine lock), cached."""
        cached = self._compiled.get(key)
        if cached is not None:
            self.compile_stats.hits += 1
            return cached
        start = time.perf_counter()
        try:
            with self.engine_lock:
                sql = plan()
        except SemanticLayerError:
            raise
        except (RecursionError, MemoryError):
            raise SemanticLayerError(TOO_DEEP) from None
        except Exception as exc:  # MetricFlow raises many error types; all mean "bad query"
            raise SemanticLayerError(str(exc)) from exc
        sql = merge_twin_aggregations(quote_reserved_identifiers(sql, self._reserved_names))
        self._compiled.put(key, sql)
        self.compile_stats.compiled += 1
        self.compile_stats.seconds += time.perf_counter() - start
        return sql

    def run(self, sql: str, timeout_s: float | None = None) -> pa.Table:
        """Run compiled SQL on the warehouse (calls may overlap; small answers run prepared, see
        greenery.semantic.prepared); stopped after `timeout_s` seconds if given."""
        try:
            return self.client.arrow(sql, timeout_s)
        except duckdb.OutOfMemoryException:
            raise QueryOutOfMemory(TOO_BIG) from None
        except duckdb.Error as exc:
            raise SemanticLayerError(f"the warehouse rejected the query: {exc}") from exc

    def query(self, **request: object) -> QueryResult:
        """Compile with MetricFlow, run, return Arrow rows (same arguments as compile)."""
        start = time.perf_counter()
        sql = self.compile(**request)  # type: ignore[arg-type]
        return QueryResult(sql=sql, table=self.run(sql), seconds=time.perf_counter() - start)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""The query service every protocol adapts: published versions, jobs, caches.

It loads the semantic manifest once and keeps a warm MetricFlow engine over the newest
published copy of the warehouse (it never opens the warehouse dbt writes); when a new version
is published it switches to it without a restart, while requests already running finish on
the old one. A query is a `QueryRequest` (names as MetricFlow spells them), checked by
`greenery.semantic.filters` before MetricFlow sees it, run as a `QueryJob` on a worker pool
shared fairly between clients (`greenery.serve.scheduler`), and kept for polling; compiled SQL
and answers are cached per published version, and an answer in the cache is served at once,
never queued behind running queries.

The GraphQL API, Arrow Flight SQL and HTTP modules beside this one are adapters on
`SemanticLayerService`; none of them is imported here.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from greenery.semantic import filters
from greenery.semantic.cache import Lru
from greenery.semantic.declarative import ExportCache, export_of
from greenery.semantic.layer import (
    MetricQuery,
    QueryInterrupted,
    QueryOutOfMemory,
    SemanticLayer,
    SemanticLayerError,
)
from greenery.semantic.watchdog import Cancellable, interrupting, running
from greenery.serve.catalog import Catalog
from greenery.serve.scheduler import FairScheduler, QueueFull
from greenery.serve.tables import SqlTables
from greenery.warehouse import store
from greenery.warehouse.dbt import MANIFEST_PATH
from greenery.warehouse.publish import current_published

PAGE_ROWS = 1024
CHECK_EVERY_S = 1.0  # how often the server looks at published/CURRENT
QUERY_WAIT_S = 600.0  # one-call transports (Flight SQL, the SQL API) wait this long for a query
TIMEOUT_ENV, DEFAULT_TIMEOUT_S = "GREENERY_QUERY_TIMEOUT_S", 300.0  # DuckDB is interrupted after this
MAX_ITEMS = 100  # metrics, group-by or order-by items in one query
MAX_FILTERS = 20  # where filters in one query …
MAX_FILTER_TEXT = 20_000  # … and their characters together
# A request this long (names and filters), or with this many items, is a large job: large jobs
# share at most QUERY_WORKERS - 1 workers, so ordinary queries always have one.
LARGE_REQUEST_CHARS, LARGE_REQUEST_ITEMS = 2_000, 20
SHUTTING_DOWN = "the server is shutting down"  # the reason given to work stopped because the server stops
INTERNAL_ERROR = "internal error"  # how a job's error starts when the server, not the query, failed
# What a client hears when its input nests too deeply or is too big to process (RecursionError,
# MemoryError): its own error, never an internal one.
TOO_COMPLEX = "the query is too large or too deeply nested to process: ask for less at once"
QUERY_WORKERS = 4  # queries running at once (one client at most QUERY_WORKERS - 1)
# MetricFlow plans in pure Python, holding the GIL for a second or more on a large query; a
# request thread waits up to this long for its turn at each hand-over (Python's default: 5 ms).
GIL_SWITCH_INTERVAL_S = 0.0005
KEEP_RESULTS = 256  # finished results kept for polling …
KEEP_RESULT_BYTES = 256 * 1024 * 1024  # … within this many bytes of Arrow data
CACHE_RESULTS = 128  # answers kept per published version for readCache …
CACHE_RESULT_BYTES = 128 * 1024 * 1024  # … within this many bytes
# A query that last answered this fast on its version runs in the thread that starts it (the
# event loop, for GraphQL), when a worker's place is free: see SemanticLayerService.create_query.
QUICK_RUN_S = 0.010
KEEP_QUICK = 1024  # requests whose last run time is remembered per published version …
KEEP_QUICK_CHARS = 8 * 1024 * 1024  # … within this many characters of their text
# SQL whose answer changes without a new publish: never answered from the cache.
_VOLATILE_SQL = re.compile(
    r"\b(current_date|current_time|current_timestamp|localtimestamp|now|today|random|get_current_time)\b",
    re.I,
)
log = logging.getLogger("greenery.serve")


class ServerConfigError(ValueError):
    """The server cannot start as configured (the message says what to change)."""


def _escaped(text: str) -> str:
    """Text for one log line: control characters escaped, so input cannot forge a line."""
    return text.encode("unicode_escape").decode("ascii")


def query_timeout_s() -> float:
    """How long one query may run: ``$GREENERY_QUERY_TIMEOUT_S`` seconds, default 300."""
    try:
        return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    except ValueError:
        raise ServerConfigError(f"${TIMEOUT_ENV} must be a number of seconds") from None


class QueryFailed(ValueError):
    """A query the semantic layer refused or could not answer (the message says why)."""


class QueryTooBig(QueryFailed):
    """A query over the warehouse's memory limit."""


class QueryTimedOut(RuntimeError):
    """A query that did not finish in time (it was cancelled)."""


# what a one-call transport raises for a query the semantic layer stopped so (others: QueryFailed)
_FAILURES: dict[type[Exception], type[Exception]] = {
    QueryInterrupted: QueryTimedOut,
    QueryOutOfMemory: QueryTooBig,
}


class QueryNotFound(ValueError):
    """A query id the server does not know (never created, or its result was evicted)."""


@dataclass(frozen=True)
class QueryRequest:
    """One semantic-layer query, as MetricFlow names things (``metric_time__week``, ``-revenue``)."""

    metrics: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    where: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()
    limit: int | None = None
    saved_query: str | None = None
    aliases: tuple[tuple[str, str], ...] = ()  # (metric, output column name)
    dimension_values: bool = False  # the distinct values of the one group-by item (for `metrics`)

    def checked(self) -> QueryRequest:
        """Names checked, sizes bounded, filters validated and canonical (ValueError, FilterRejected)."""
        for items, bound, what in (
            (self.metrics, MAX_ITEMS, "metrics"),
            (self.group_by, MAX_ITEMS, "group-by items"),
            (self.order_by, MAX_ITEMS, "order-by items"),
            (self.where, MAX_FILTERS, "where filters"),
        ):
            if len(items) > bound:
                raise ValueError(f"at most {bound} {what} in one query (got {len(items)})")
        if sum(len(w) for w in self.where) > MAX_FILTER_TEXT:
            raise ValueError(f"the where filters are longer than {MAX_FILTER_TEXT:,} characters together")
        for name in self.metrics:
            filters.check_name(name, "metric")
        for name in self.group_by:
            filters.check_name(name, "group-by")
        for name in self.order_by:
            filters.check_name(name.removeprefix("-"), "order-by")
        for _, alias in self.aliases:
            filters.check_name(alias, "alias")
        if self.saved_query is not None:
            filters.check_name(self.saved_query, "saved query")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be ≥ 0 (got {self.limit})")
        if self.dimension_values:
            if len(self.group_by) != 1 or self.saved_query or self.where or self.order_by or self.limit:
                raise ValueError("dimension values take one group-by item, optionally metrics, nothing else")
            return self
        if self.saved_query is None and not self.metrics and not self.group_by:
            raise ValueError(
                "a query needs metrics, group-by items (a dimension-only query) or a saved query"
            )
        try:
            return replace(self, where=tuple(filters.normalize_wheres(self.where)))
        except (RecursionError, MemoryError):
            raise ValueError(f"a where filter: {TOO_COMPLEX}") from None

    @property
    def query(self) -> MetricQuery:
        """What MetricFlow is asked (the key its compiled SQL is cached under)."""
        return MetricQuery(
            self.metrics, self.group_by, self.where, self.order_by, self.limit, self.saved_query
        )

    def text_size(self) -> int:
        """Characters of its names and filters (what keeping the request holds on to)."""
        texts = (*self.metrics, *self.group_by, *self.where, *self.order_by, self.saved_query or "")
        return sum(len(t) for t in texts)

    @property
    def large(self) -> bool:
        """Whether it runs as a large job (see LARGE_REQUEST_CHARS)."""
        items = len(self.metrics) + len(self.group_by) + len(self.where) + len(self.order_by)
        return self.text_size() >= LARGE_REQUEST_CHARS or items >= LARGE_REQUEST_ITEMS

    def describe(self) -> str:
        if self.dimension_values:
            metrics = f" for {','.join(self.metrics)}" if self.metrics else ""
            return f"values of {self.group_by[0]}{metrics}"
        return self.saved_query or ",".join(self.metrics) or "-"


class PublishedLayer:
    """One published version: its warm SemanticLayer, its metadata, compiled SQL and cached answers.

    The published copy never changes, so an answer is valid for the life of its version (unless
    its SQL asks for the time or randomness). Closed once it has been replaced and the last
    request using it has finished.
    """

    def __init__(self, layer: SemanticLayer, version: str) -> None:
        self.layer = layer
        self.version = version
        self.catalog = Catalog(layer, layer.engine_lock)
        self.tables = SqlTables(self.catalog, self._describe)
        self.exports = _export_cache(layer, version)
        self._answers: Lru[QueryRequest, pa.Table] = Lru(CACHE_RESULTS, CACHE_RESULT_BYTES, _answer_size)
        self._quick: Lru[tuple[QueryRequest, bool], bool] = Lru(
            KEEP_QUICK, KEEP_QUICK_CHARS, lambda key, _quick: key[0].text_size()
        )
        self._users = 0
        self._retired = False
        self._state_lock = threading.Lock()

    @classmethod
    def open(cls, folder: Path, warehouse_name: str) -> PublishedLayer:
        layer = SemanticLayer(folder / warehouse_name, folder / MANIFEST_PATH.name)
        return cls(layer, folder.name)

    def compile(self, request: QueryRequest, *, read_cache: bool = True) -> str:
        """The SQL for a checked request: MetricFlow's (the layer compiles each distinct query
        once), or, with `read_cache`, SQL over a current export table when that answers it exactly."""
        if request.dimension_values:
            return self.layer.compile_dimension_values(request.group_by[0], request.metrics)
        sql = self.layer.compile(**request.query._asdict())
        if read_cache:
            cached = self.exports.rewrite(request.query, sql)
            if cached is not None:
                return cached.sql
        return sql

    def cached_answer(self, request: QueryRequest) -> tuple[str, pa.Table] | None:
        """(SQL, rows) of a checked request answered before on this version, else None; never waits."""
        if request.dimension_values or (sql := self.layer.compiled(request.query)) is None:
            return None
        table = self._answers.get(request)
        return None if table is None else (sql, table)

    def _describe(self, metrics: list[str], group_by: list[str]) -> pa.Schema:
        """The Arrow schema of MetricFlow's answer, from a zero-row run of its SQL.

        All columns in one query when MetricFlow can join them all; else column by column:
        each group-by item with one metric of the table, each metric alone (by metric_time
        when it needs it).
        """
        try:
            return self._zero_rows(metrics, group_by)
        except SemanticLayerError:
            needs_time = {m["name"] for m in self.catalog.metrics if m["requiresMetricTime"]}
            anchor = [m for m in metrics if m not in needs_time][:1]
            fields = [self._zero_rows(anchor, [name]).field(name) for name in group_by]
            for metric in metrics:
                time = ["metric_time__day"] if metric in needs_time else []
                fields.append(self._zero_rows([metric], time).field(metric))
            return pa.schema(fields)

    def _zero_rows(self, metrics: list[str], group_by: list[str]) -> pa.Schema:
        request = QueryRequest(metrics=tuple(metrics), group_by=tuple(group_by))
        return self.execute(f"select * from ({self.compile(request)}) limit 0", request).schema

    def answer(self, request: QueryRequest, *, read_cache: bool = True) -> tuple[str, pa.Table, bool]:
        """(SQL, rows, whether they came from the cache) for a checked request."""
        sql = self.compile(request, read_cache=read_cache)
        if read_cache and (table := self._answers.get(request)) is not None:
            return sql, table, True
        start = time.perf_counter()
        table = self.execute(sql, request)
        self._quick.put((request, read_cache), time.perf_counter() - start <= QUICK_RUN_S)
        if not _VOLATILE_SQL.search(sql):
            self._answers.put(request, table)
        return sql, table, False

    def runs_quickly(self, request: QueryRequest, read_cache: bool) -> bool:
        """Whether the request (compiled already) ran within QUICK_RUN_S when it last ran here."""
        return self._quick.get((request, read_cache)) is True

    def execute(self, sql: str, request: QueryRequest) -> pa.Table:
        """Run compiled SQL read-only (calls may overlap: see greenery.semantic.prepared)."""
        table = self.layer.run(sql, query_timeout_s())
        if request.dimension_values and table.num_columns:
            table = table.sort_by([(table.column_names[0], "ascending")])
        if request.aliases:
            names = dict(request.aliases)
            table = table.rename_columns([names.get(n, n) for n in table.column_names])
        return table

    def acquire(self) -> None:
        with self._state_lock:
            self._users += 1

    def release(self) -> None:
        with self._state_lock:
            self._users -= 1
            close = self._retired and self._users == 0
        if close:
            self.layer.close()

    def retire(self) -> None:
        with self._state_lock:
            self._retired = True
            close = self._users == 0
        if close:
            self.layer.close()


def _answer_size(request: QueryRequest, table: pa.Table) -> int:
    """Bytes a cached answer holds on to: its Arrow data and the text of its request."""
    return table.nbytes + request.text_size()


def _export_cache(layer: SemanticLayer, version: str) -> ExportCache:
    """The export tables this version may answer from (none if they cannot be read)."""
    manifest = layer.lookup.semantic_manifest
    try:
        cache = ExportCache(layer.client.connection, manifest, layer.manifest_sha256)
    except Exception as exc:  # the cache is an optimization: without it every query still runs
        log.error("published version %s: export tables not usable as a cache: %s", version, exc)
        return ExportCache(None, manifest, "")
    current = ", ".join(e.relation for e in cache.exports) or "none"
    log.info("version %s (build %s) answers from export tables: %s", version, cache.build_id, current)
    return cache


class LayerHolder:
    """The PublishedLayer to use now. A watcher thread looks at ``published/CURRENT`` every
    CHECK_EVERY_S and swaps in a new version once it is open, so no request waits while one
    opens (seconds: MetricFlow loads its manifest); until then the previous version answers."""

    def __init__(self, warehouse_file: Path) -> None:
        self._warehouse_file = warehouse_file
        folder = current_published(warehouse_file)
        if folder is None:
            raise ServerConfigError(
                f"nothing is published next to {warehouse_file}: build and publish first "
                "(`make demo`, or `greenery build` then `greenery publish`)"
            )
        self._current = PublishedLayer.open(folder, warehouse_file.name)
        self._swap_lock = threading.Lock()
        self._failed_version: str | None = None
        self._closed = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="greenery-publish-watch", daemon=True)
        self._watcher.start()

    @property
    def version(self) -> str:
        return self._current.version

    @contextmanager
    def use(self) -> Iterator[PublishedLayer]:
        """The current layer, kept open until the caller is done with it."""
        with self._swap_lock:
            layer = self._current
            layer.acquire()
        try:
            yield layer
        finally:
            layer.release()

    def _watch(self) -> None:
        while not self._closed.wait(CHECK_EVERY_S):
            try:
                self._refresh()
            except Exception:  # the folder vanished meanwhile, say: look again next time
                log.exception("looking for a new published version failed; still serving %s", self.version)

    def _refresh(self) -> None:
        """Switch to a newer published version, if there is one (a broken one is skipped, logged)."""
        folder = current_published(self._warehouse_file)
        if folder is None or folder.name in (self._current.version, self._failed_version):
            return
        try:
            fresh = PublishedLayer.open(folder, self._warehouse_file.name)
        except Exception as exc:  # a broken publish must not take the server down
            self._failed_version = folder.name
            log.error(
                "cannot open published version %s, still serving %s: %s", folder.name, self.version, exc
            )
            return
        with self._swap_lock:
            old, self._current = self._current, fresh
        old.retire()
        log.info("now serving published version %s (was %s)", fresh.version, old.version)

    def close(self) -> None:
        self._closed.set()
        self._watcher.join()  # a version it is opening now is retired below, once swapped in
        with self._swap_lock:
            self._current.retire()


@dataclass
class QueryJob:
    """A query created by a client: its state, and its result until evicted."""

    id: str
    request: QueryRequest
    checked: QueryRequest | None = None  # the request checked, once it has been
    status: str = "PENDING"  # PENDING → RUNNING → SUCCESSFUL | FAILED
    sql: str | None = None
    error: str | None = None
    failure: type[Exception] = QueryFailed  # what run_query raises with the error
    table: pa.Table | None = None
    version: str | None = None
    read_cache: bool = True
    transport: str = "graphql"  # or "flight": shown in the query log
    statement: str | None = None  # the SQL or template a one-call transport answered with this job
    from_cache: bool = False
    millis: float | None = None
    done: threading.Event = field(default_factory=threading.Event)  # set once finished and logged
    work: Cancellable = field(default_factory=Cancellable, repr=False)  # stopped by cancelQuery
    _finished: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _when_done: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the job is done: now if it is, else in the thread that ends it."""
        with self._lock:
            if not self.done.is_set():
                self._when_done.append(callback)
                return
        callback()

    def set_done(self) -> None:
        """The job is finished and logged: wake whoever waits for it."""
        with self._lock:
            self.done.set()
            callbacks, self._when_done = self._when_done, []
        for callback in callbacks:
            callback()

    @property
    def rows(self) -> int | None:
        return None if self.table is None else self.table.num_rows

    @property
    def total_pages(self) -> int | None:
        if self.table is None:
            return None
        return max(1, math.ceil(self.table.num_rows / PAGE_ROWS))

    def page(self, number: int) -> pa.Table:
        if self.table is None or self.total_pages is None:
            raise ValueError(f"query {self.id} has no result (status {self.status})")
        if not 1 <= number <= self.total_pages:
            raise ValueError(f"page {number} of query {self.id} does not exist (pages 1..{self.total_pages})")
        return self.table.slice((number - 1) * PAGE_ROWS, PAGE_ROWS)

    def start(self) -> bool:
        """PENDING → RUNNING, unless the job was cancelled while it waited for a worker."""
        with self._lock:
            if self._finished:
                return False
            self.status = "RUNNING"
            return True

    def finish(
        self,
        *,
        table: pa.Table | None = None,
        error: str | None = None,
        failure: type[Exception] = QueryFailed,
    ) -> bool:
        """Record the outcome once (a cancelled job stays cancelled); False if already finished."""
        with self._lock:
            if self._finished:
                return False
            if error is None:
                self.table, self.status = table, "SUCCESSFUL"
            else:
                self.error, self.failure, self.status = error, failure, "FAILED"
            self._finished = True
            return True


class QueryStore:
    """Jobs by id, bounded: once over `max_jobs` or `max_bytes` of results, the oldest finished go first."""

    def __init__(self, max_jobs: int = KEEP_RESULTS, max_bytes: int = KEEP_RESULT_BYTES) -> None:
        self._jobs: OrderedDict[str, QueryJob] = OrderedDict()
        self._lock = threading.Lock()
        self._max_jobs = max_jobs
        self._max_bytes = max_bytes
        self._bytes = 0

    def add(self, request: QueryRequest) -> QueryJob:
        job = QueryJob(id=secrets.token_hex(16), request=request)
        with self._lock:
            self._jobs[job.id] = job
            self._evict()
        return job

    def get(self, query_id: str) -> QueryJob:
        with self._lock:
            job = self._jobs.get(query_id)
        if job is None:
            raise QueryNotFound(
                f"unknown query id {query_id!r}: it was never created here, or its result was evicted "
                f"(the server keeps the last {self._max_jobs} results); create the query again"
            )
        return job

    def finished(self, job: QueryJob) -> None:
        """Account for a job's result (call once, after it finished)."""
        with self._lock:
            if job.id in self._jobs and job.table is not None:
                self._bytes += job.table.nbytes
            self._evict()

    def _evict(self) -> None:
        """Drop the oldest finished jobs while over a bound. A full store evicts on every add:
        the search stops at the first finished job (the oldest, as a rule), never lists them all."""
        while len(self._jobs) > self._max_jobs or self._bytes > self._max_bytes:
            oldest = next((i for i, j in self._jobs.items() if j.done.is_set()), None)
            if oldest is None:
                return
            job = self._jobs.pop(oldest)
            self._bytes -= job.table.nbytes if job.table is not None else 0

    def unfinished(self) -> list[QueryJob]:
        with self._lock:
            return [job for job in self._jobs.values() if not job.done.is_set()]

    def __len__(self) -> int:
        return len(self._jobs)


class SemanticLayerService:
    """What the APIs do, transport-free: metadata, compile, create/poll/cancel queries, health."""

    def __init__(self, warehouse_file: Path | None = None, *, workers: int = QUERY_WORKERS) -> None:
        self.warehouse_file = store.resolve(warehouse_file)
        self.layers = LayerHolder(self.warehouse_file)
        self.queries = QueryStore()
        self.scheduler = FairScheduler(workers)
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))

    def compile_sql(self, request: QueryRequest, *, read_cache: bool = True) -> str:
        """The SQL the request runs: with `read_cache` false, MetricFlow's on the marts, as a
        query created with it runs, never an export table's."""
        checked = request.checked()
        with self.layers.use() as layer:
            return layer.compile(checked, read_cache=read_cache)

    def create_query(
        self, request: QueryRequest, *, read_cache: bool = True, transport: str = "graphql"
    ) -> QueryJob:
        """Start the query; its job, for the client to poll (finished already if answered from the cache).

        With `read_cache`, an answer already computed on the same published version is reused
        at once. A query that answered within QUICK_RUN_S last time runs here when a worker's
        place is free. Otherwise the query waits its turn among the current client's (see
        `greenery.serve.scheduler`); a client with too many waiting gets a FAILED job saying so.
        """
        job, quick = self._new_job(request, read_cache, transport)
        if job.done.is_set():
            return job
        if not (quick and self.scheduler.run_here(lambda: self._run(job), large=request.large)):
            self._submit(job)
        return job

    def run_query(
        self, request: QueryRequest, *, read_cache: bool = True, transport: str, wait_s: float = QUERY_WAIT_S
    ) -> QueryJob:
        """Run the query to the end; the finished job, or QueryFailed / QueryTimedOut / RuntimeError.

        For transports that answer in one call (Flight SQL, the SQL API): the calling thread runs
        the query itself when a worker is free, and waits for its turn otherwise. A user error
        is a QueryFailed with its message, an unexpected failure a RuntimeError.
        """
        job, _ = self._new_job(request, read_cache, transport)
        if not job.done.is_set() and not self.scheduler.run_here(lambda: self._run(job), large=request.large):
            self._submit(job)
            with interrupting(lambda: self.cancel_query(job.id)):  # the caller's statement was stopped
                job.done.wait(wait_s)
        if not job.done.is_set():
            self.cancel_query(job.id)
            raise QueryTimedOut(f"the query took longer than {wait_s:.0f} s")
        if job.status != "SUCCESSFUL" or job.table is None:
            raise job.failure(job.error or f"the query ended {job.status}")
        return job

    def _new_job(self, request: QueryRequest, read_cache: bool, transport: str) -> tuple[QueryJob, bool]:
        """A job for the request, kept for polling, finished already if its answer was cached; and
        whether its query ran within QUICK_RUN_S last time on this version (then a few
        milliseconds on the caller's thread cost less than the hand-over to a worker and back,
        about 0.5 ms of a 5 ms query on this machine)."""
        job = self.queries.add(request)
        job.read_cache = read_cache
        job.transport = transport
        return job, self._look_up(job)

    def _submit(self, job: QueryJob) -> None:
        """Queue the job for a worker; a client with too many waiting gets it FAILED, saying so."""
        try:
            self.scheduler.submit(lambda: self._run(job), large=job.request.large)
        except QueueFull as exc:
            job.finish(error=str(exc))
            self._done(job, time.perf_counter())

    def keep(self, table: pa.Table, *, statement: str, transport: str, millis: float) -> QueryJob:
        """A finished job holding an answer computed elsewhere (SQL, metadata), for the client to fetch."""
        job = self.queries.add(QueryRequest())
        job.transport, job.statement, job.millis = transport, statement, millis
        job.finish(table=table)
        self._log(job)
        self.queries.finished(job)
        job.set_done()
        return job

    def failed_query(self, request: QueryRequest, message: str) -> QueryJob:
        """A job that failed before it could run (malformed arguments), for the client to poll."""
        job = self.queries.add(request)
        job.finish(error=message)
        self.queries.finished(job)
        job.set_done()
        return job

    def get_query(self, query_id: str) -> QueryJob:
        return self.queries.get(query_id)

    def cancel_query(self, query_id: str) -> QueryJob:
        """Finish the job as cancelled, and stop its query if it runs."""
        job = self.queries.get(query_id)
        self._stop(job, "cancelled by the client", "user request")
        return job

    @staticmethod
    def _stop(job: QueryJob, error: str, reason: str) -> None:
        if job.finish(error=error):
            job.work.stop(reason)
            job.set_done()

    def _look_up(self, job: QueryJob) -> bool:
        """What the current version knows of the job's request, in one visit, never waiting: with
        `read_cache`, an answer computed before finishes the job now (no worker needed); the
        result says whether its query ran within QUICK_RUN_S when it last ran."""
        start = time.perf_counter()
        try:
            job.checked = job.request.checked()
            with self.layers.use() as layer:
                hit = layer.cached_answer(job.checked) if job.read_cache else None
                quick, version = layer.runs_quickly(job.checked, job.read_cache), layer.version
        except Exception:  # whatever it is, the worker meets it again and reports it
            return False
        if hit is not None and job.start():
            job.version, job.from_cache = version, True
            job.sql, table = hit
            job.finish(table=table)
            self._done(job, start)
        return quick

    def _run(self, job: QueryJob) -> None:
        start = time.perf_counter()
        if not job.start():
            return
        try:
            checked = job.checked or job.request.checked()
            with running(job.work), self.layers.use() as layer:
                job.version = layer.version
                job.sql, table, job.from_cache = layer.answer(checked, read_cache=job.read_cache)
            job.finish(table=table)
        except (SemanticLayerError, ValueError) as exc:
            job.finish(error=str(exc), failure=_FAILURES.get(type(exc), QueryFailed))
        except (RecursionError, MemoryError):  # nesting or size the input should not have had
            job.finish(error=TOO_COMPLEX)
        except Exception as exc:  # report, never leave a client polling forever
            log.exception("query %s failed unexpectedly", job.id)
            job.finish(error=f"{INTERNAL_ERROR} ({type(exc).__name__}): {exc}", failure=RuntimeError)
        finally:
            self._done(job, start)

    def _done(self, job: QueryJob, start: float) -> None:
        """Log a finished job, count its bytes, wake whoever waits for it."""
        job.millis = (time.perf_counter() - start) * 1000
        self._log(job)
        self.queries.finished(job)  # count its bytes before it can be evicted
        job.set_done()

    @staticmethod
    def _log(job: QueryJob) -> None:
        log.info(
            "%s %s %s %s rows=%s ms=%.0f%s%s%s%s",
            "createQuery" if job.statement is None else "statement",
            job.id[:8],
            job.status,
            f"metrics={_escaped(job.request.describe())}"
            if job.statement is None
            else f"sql={job.statement[:120]!r}",
            job.rows if job.rows is not None else "-",
            job.millis,
            " cache=hit" if job.from_cache else "",
            f" cache=export:{export}" if job.sql and (export := export_of(job.sql)) else "",
            f" via={job.transport}" if job.transport != "graphql" else "",
            f" error={job.error.splitlines()[0][:160]!r}" if job.error else "",
        )

    def health(self) -> dict[str, Any]:
        with self.layers.use() as layer:
            return {
                "status": "ok",
                "published_version": layer.version,
                "metrics": len(layer.catalog.metrics),
                "saved_queries": len(layer.catalog.saved_queries),
                "queries_kept": len(self.queries),
            }

    def close(self) -> None:
        """Queries not finished end FAILED (the server is shutting down), their DuckDB statements
        stopped; then the workers are waited for and the warehouse closed."""
        for job in self.queries.unfinished():
            self._stop(job, SHUTTING_DOWN, SHUTTING_DOWN)
        self.scheduler.shutdown(wait=True)
        self.layers.close()

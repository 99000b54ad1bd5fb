"""Latency, throughput and memory of the semantic-layer server, against `mf query` and plain DuckDB.

The weekly funnel (saved query ``funnel_by_week``) is asked for four ways:
- through the server: GraphQL ``createQuery`` + ``query`` polls, Arrow pages decoded (stdlib
  HTTP client with keep-alive; and the real ``dbt-sl-sdk`` client when it is installed);
- with ``mf query`` in a subprocess (dbt and MetricFlow start-up every time);
- as MetricFlow's compiled SQL, and as hand-written SQL, straight on DuckDB over the same marts.
Then 16 concurrent clients hammer the server for 30 s (loopback only, every answer checked).
The server runs in its own process, so its resident memory is measured alone.

    python -m benchmarks.server /tmp/bench/greenery.duckdb   # a built, published warehouse
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store
from greenery.warehouse.dbt import run_tool
from greenery.warehouse.publish import current_published

SAVED_QUERY = "funnel_by_week"
CLIENTS = 16
LOAD_SECONDS = 30.0
MAX_REQUESTS_PER_CLIENT = 100_000  # the load loop is bounded even if the clock misbehaves
CREATE = (
    "mutation($saved: String!, $cache: Boolean!) { createQuery(environmentId: 1, savedQuery: $saved, "
    "readCache: $cache) { queryId } }"
)
POLL = (
    "query($id: String!, $page: Int!) { query(environmentId: 1, queryId: $id, pageNum: $page) "
    "{ status error totalPages arrowResult } }"
)
# The weekly funnel written by hand over the mart MetricFlow reads (fct_sessions).
PLAIN_SQL = """
with weekly as (
    select
        date_trunc('week', session_started_at) as metric_time__week,
        sum(case when has_page_view then 1 else 0 end) as sessions_with_page_view,
        sum(case when has_add_to_cart then 1 else 0 end) as sessions_with_add_to_cart,
        sum(case when has_checkout then 1 else 0 end) as sessions_with_checkout
    from marts.fct_sessions
    group by 1
),

rates as (
    select
        *,
        sessions_with_add_to_cart / nullif(sessions_with_page_view, 0) as view_to_cart_rate,
        sessions_with_checkout / nullif(sessions_with_add_to_cart, 0) as cart_to_checkout_rate,
        sessions_with_checkout / nullif(sessions_with_page_view, 0) as view_to_checkout_rate
    from weekly
)

select
    *,
    view_to_checkout_rate - lag(view_to_checkout_rate) over (order by metric_time__week)
        as view_to_checkout_rate_wow_change
from rates
order by metric_time__week
"""


class BenchError(RuntimeError):
    """The benchmark could not run (the message says what to fix)."""


@dataclass
class Timings:
    seconds: list[float] = field(default_factory=list)
    errors: int = 0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile, in milliseconds."""
        ordered = sorted(self.seconds)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] * 1000

    def summary(self) -> str:
        return (
            f"p50 {self.percentile(50):8.1f} ms  p95 {self.percentile(95):8.1f} ms  (n={len(self.seconds)})"
        )


def _time(call: Callable[[], object], runs: int, warmup: int = 3) -> Timings:
    for _ in range(warmup):
        call()
    timings = Timings()
    for _ in range(runs):
        start = time.perf_counter()
        call()
        timings.seconds.append(time.perf_counter() - start)
    return timings


# ---- the server in its own process --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid} (is this Linux?)")


class ServerProcess:
    """`greenery serve` in a child process on free loopback ports, with a fresh token.

    With `flight=True` it also serves Arrow Flight SQL, with `postgres=True` the Postgres wire
    protocol (both started before the HTTP server, so a healthy /healthz means all are up). Its
    output goes to a temporary file, shown on failure.
    """

    def __init__(self, warehouse_file: Path, *, flight: bool = False, postgres: bool = False) -> None:
        self.port = _free_port()
        self.flight_port = _free_port() if flight else None
        self.pg_port = _free_port() if postgres else None
        self.token = secrets.token_hex(16)
        env = {**os.environ, "GREENERY_API_TOKEN": self.token, store.ENV_VAR: str(warehouse_file)}
        command = [str(Path(sys.executable).with_name("greenery")), "serve", "--port", str(self.port)]
        if self.flight_port is not None:
            command += ["--flight-port", str(self.flight_port)]
        if self.pg_port is not None:
            command += ["--pg-port", str(self.pg_port)]
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - lives with the process, closed in stop()
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise

    @property
    def flight_uri(self) -> str:
        return f"grpc://127.0.0.1:{self.flight_port}"

    def _output(self) -> str:
        self._log.seek(0)
        return self._log.read()[-3000:]

    def _wait_until_healthy(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"greenery serve exited at start-up:\n{self._output()}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError(
            f"greenery serve did not answer /healthz within {timeout_s:.0f} s:\n{self._output()}"
        )

    @property
    def rss_mib(self) -> float:
        return _rss_mib(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class GraphQLClient:
    """createQuery + polling over one keep-alive HTTP connection (stdlib only)."""

    def __init__(self, port: int, token: str, *, read_cache: bool = True) -> None:
        self._read_cache = read_cache
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self._headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}

    def _post(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}})
        self._connection.request("POST", "/api/graphql", body=body, headers=self._headers)
        answer = json.loads(self._connection.getresponse().read())
        if answer.get("errors"):
            raise BenchError(f"GraphQL error: {answer['errors'][0]['message']}")
        return answer["data"]

    def funnel_by_week(self) -> pa.Table:
        variables = {"saved": SAVED_QUERY, "cache": self._read_cache}
        query_id = self._post(CREATE, variables)["createQuery"]["queryId"]
        page = self._poll(query_id)
        pages = [page] + [self._page(query_id, n) for n in range(2, page["totalPages"] + 1)]
        return pa.concat_tables(
            pa.ipc.open_stream(base64.b64decode(p["arrowResult"])).read_all() for p in pages
        )

    def _poll(self, query_id: str) -> dict[str, Any]:
        for _ in range(1200):
            page = self._page(query_id, 1)
            if page["status"] == "SUCCESSFUL":
                return page
            if page["status"] == "FAILED":
                raise BenchError(f"query failed: {page['error']}")
            time.sleep(0.05)
        raise BenchError(f"query {query_id} still not done after a minute")

    def _page(self, query_id: str, number: int) -> dict[str, Any]:
        return self._post(POLL, {"id": query_id, "page": number})["query"]

    def close(self) -> None:
        self._connection.close()


# ---- the measurements ---------------------------------------------------------------------


def _sdk_timings(port: int, token: str, runs: int) -> Timings | None:
    """The same query with the real dbt-sl-sdk client (GraphQL path), when it is installed."""
    try:
        import dbtsl.env
        from dbtsl import SemanticLayerClient
    except ImportError:
        return None
    url_format = dbtsl.env.GRAPHQL_URL_FORMAT
    dbtsl.env.GRAPHQL_URL_FORMAT = "http://{server_host}/api/graphql"  # read when a client is made
    try:
        client = SemanticLayerClient(environment_id=1, auth_token=token, host=f"127.0.0.1:{port}")
    finally:
        dbtsl.env.GRAPHQL_URL_FORMAT = url_format
    client._method_map["query"] = "graphql"  # Flight SQL is not served yet
    with client.session():
        return _time(lambda: client.query(saved_query=SAVED_QUERY), runs)


def _mf_timings(warehouse_file: Path, runs: int) -> Timings:
    """`mf query --saved-query funnel_by_week`: dbt and MetricFlow start up on every call."""

    def ask() -> None:
        done = run_tool("mf", ["query", "--saved-query", SAVED_QUERY], warehouse_file=warehouse_file)
        if done.returncode != 0:
            raise BenchError(f"mf query failed:\n{done.stdout}{done.stderr}")

    return _time(ask, runs, warmup=1)


@dataclass
class Load:
    """What `clients` concurrent clients got for `seconds`."""

    timings: Timings
    queries_per_s: float
    peak_rss_mib: float


def _load(server: ServerProcess, clients: int, seconds: float, *, read_cache: bool) -> Load:
    """`clients` threads asking the weekly funnel until the deadline; every answer is checked."""
    timings = Timings()
    lock = threading.Lock()
    probe = GraphQLClient(server.port, server.token)
    expected_rows = probe.funnel_by_week().num_rows
    probe.close()
    deadline = time.monotonic() + seconds

    def client() -> None:
        session = GraphQLClient(server.port, server.token, read_cache=read_cache)
        try:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if time.monotonic() >= deadline:
                    return
                start = time.perf_counter()
                try:
                    ok = session.funnel_by_week().num_rows == expected_rows
                except (BenchError, OSError, http.client.HTTPException):
                    ok = False
                    session.close()
                    session = GraphQLClient(server.port, server.token, read_cache=read_cache)
                with lock:
                    if ok:
                        timings.seconds.append(time.perf_counter() - start)
                    else:
                        timings.errors += 1
        finally:
            session.close()

    threads = [threading.Thread(target=client, name=f"bench-client-{i}") for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    peak = server.rss_mib
    while any(t.is_alive() for t in threads):
        peak = max(peak, server.rss_mib)
        time.sleep(0.25)
    return Load(timings, len(timings.seconds) / (time.monotonic() - started), peak)


@dataclass
class ServerFigures:
    first_call_ms: float
    rows: pa.Table
    uncached: Timings
    cached: Timings
    sdk: Timings | None
    loads: dict[bool, Load]  # by readCache
    rss_mib: dict[str, float]


def _measure_server(warehouse_file: Path, runs: int, clients: int, load_seconds: float) -> ServerFigures:
    server = ServerProcess(warehouse_file)
    try:
        rss = {"start": server.rss_mib}
        client = GraphQLClient(server.port, server.token, read_cache=False)
        start = time.perf_counter()
        rows = client.funnel_by_week()
        first_call_ms = (time.perf_counter() - start) * 1000
        uncached = _time(client.funnel_by_week, runs)
        client.close()
        client = GraphQLClient(server.port, server.token, read_cache=True)
        cached = _time(client.funnel_by_week, runs)
        client.close()
        sdk = _sdk_timings(server.port, server.token, max(10, runs // 2))
        rss["rest"] = server.rss_mib
        loads = {cache: _load(server, clients, load_seconds, read_cache=cache) for cache in (False, True)}
        rss["after"] = server.rss_mib
        return ServerFigures(first_call_ms, rows, uncached, cached, sdk, loads, rss)
    finally:
        server.stop()


def _measure_duckdb(folder: Path, warehouse_file: Path, runs: int) -> tuple[Timings, Timings, pa.Table]:
    """(MetricFlow's compiled SQL, the hand-written SQL, its rows), read-only on the published copy."""
    layer = SemanticLayer(folder / warehouse_file.name, folder / "semantic_manifest.json")
    try:
        compiled = layer.compile(saved_query=SAVED_QUERY)
    finally:
        layer.close()
    con = duckdb.connect(str(folder / warehouse_file.name), read_only=True)
    try:
        via_compiled = _time(lambda: con.cursor().sql(compiled).to_arrow_table(), runs)
        via_plain = _time(lambda: con.cursor().sql(PLAIN_SQL).to_arrow_table(), runs)
        return via_compiled, via_plain, con.cursor().sql(PLAIN_SQL).to_arrow_table()
    finally:
        con.close()


def _load_average() -> str:
    """The 1-minute load average of the machine (the figures are only comparable on a quiet one)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _same_funnel(server_table: pa.Table, plain: pa.Table) -> bool:
    """Plain SQL and the server agree on the funnel steps of every week with sessions."""
    steps = ["metric_time__week", *(c for c in plain.column_names if c.startswith("sessions_with_"))]
    served = {
        tuple(r.values())
        for r in server_table.select(steps).to_pylist()
        if r["sessions_with_page_view"] is not None
    }
    return served == {tuple(r.values()) for r in plain.select(steps).to_pylist()}


def run(
    warehouse_file: Path,
    *,
    runs: int = 100,
    mf_runs: int = 5,
    clients: int = CLIENTS,
    load_seconds: float = LOAD_SECONDS,
) -> list[str]:
    """Printable lines: latencies (server, SDK, mf query, DuckDB), throughput under load, server RSS."""
    folder = current_published(warehouse_file)
    if folder is None:
        raise BenchError(f"nothing published for {warehouse_file}: build it, then `publish(warehouse_file)`")
    load_before = _load_average()
    server = _measure_server(warehouse_file, runs, clients, load_seconds)
    via_compiled, via_plain, plain = _measure_duckdb(folder, warehouse_file, runs)
    via_mf = _mf_timings(warehouse_file, mf_runs)
    same = "yes" if _same_funnel(server.rows, plain) else "NO"
    lines = [
        f"weekly funnel (saved query {SAVED_QUERY}, {server.rows.num_rows} rows) on {warehouse_file}",
        f"published version {folder.name}; {os.cpu_count()} CPUs, load average {load_before} before,"
        f" {_load_average()} after (other work on the machine skews the figures)",
        "latency (one client, sequential):",
        f"  server, GraphQL createQuery+poll, readCache false  {server.uncached.summary()}"
        f"   first call {server.first_call_ms:.0f} ms (compiles)",
        f"  server, GraphQL createQuery+poll, readCache true   {server.cached.summary()}",
    ]
    if server.sdk is not None:
        lines.append(f"  server, dbt-sl-sdk client.query(), readCache true {server.sdk.summary()}")
    lines += [
        f"  mf query --saved-query (subprocess)               {via_mf.summary()}",
        f"  DuckDB in-process, MetricFlow's compiled SQL      {via_compiled.summary()}",
        f"  DuckDB in-process, hand-written SQL on the marts  {via_plain.summary()}   same funnel: {same}",
        f"throughput, {clients} concurrent clients x {load_seconds:.0f} s over loopback:",
    ]
    for cache, load in server.loads.items():
        lines.append(
            f"  readCache {str(cache).lower():<5}  {load.queries_per_s:6.0f} queries/s"
            f"  {load.timings.summary()}  errors {load.timings.errors}  peak RSS {load.peak_rss_mib:.0f} MiB"
        )
    rss = server.rss_mib
    lines.append(
        f"server RSS: {rss['start']:.0f} MiB at start, {rss['rest']:.0f} MiB at rest after warm-up,"
        f" {rss['after']:.0f} MiB after the load"
    )
    errors = sum(load.timings.errors for load in server.loads.values())
    if errors:
        lines.append(f"ERROR: {errors} failed requests under load")
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m benchmarks.server WAREHOUSE_FILE (built and published)")
    print("\n".join(run(Path(sys.argv[1]).resolve())))

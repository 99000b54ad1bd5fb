"""Load figure: N clients × S seconds of mixed GraphQL queries against `greenery serve`, per class.

Each client has its own keep-alive connection and sends one query at a time (createQuery, then
polls until done, the Arrow page decoded), cycling through three classes:
- cached: a saved query with readCache (answered from the cache after its first run);
- uncached: a saved query with readCache false (MetricFlow's SQL runs on DuckDB each time);
- heavy: four funnel metrics by day and state with 20 where filters just under the
  20,000-character bound, different every time (nothing cached), as in tests/test_fairness.py.
Every answer is checked (SUCCESSFUL, rows decoded); errors are counted per class.

    python -m benchmarks.load WAREHOUSE_FILE --clients 8 --seconds 60   # built and published
"""

from __future__ import annotations

import argparse
import base64
import http.client
import itertools
import json
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks.server import ServerProcess, Timings

CLIENTS = 8
SECONDS = 60.0
# One cycle of each client: six cached, three uncached, one heavy query.
CYCLE = ("cached",) * 6 + ("uncached",) * 3 + ("heavy",)
SAVED_QUERIES = ("funnel_overall", "funnel_by_week", "funnel_by_day", "funnel_by_product")
CREATE_SAVED = (
    "mutation($saved: String!, $cache: Boolean!) { createQuery(environmentId: 1, savedQuery: $saved, "
    "readCache: $cache) { queryId } }"
)
CREATE_HEAVY = """mutation($where: [WhereInput!]) { createQuery(environmentId: 1,
  metrics: [{name: "sessions"}, {name: "sessions_with_checkout"},
            {name: "session_view_to_checkout_conversion"}, {name: "user_view_to_checkout_conversion_7d"}],
  groupBy: [{name: "metric_time", grain: DAY}, {name: "user__state"}], where: $where) { queryId } }"""
POLL = "query($id: String!) { query(environmentId: 1, queryId: $id) { status error totalPages arrowResult } }"
_tags = itertools.count(secrets.randbelow(1 << 15))


def heaviest_filters() -> list[dict[str, str]]:
    """20 filters of 85 values each (19,480 characters), never sent before."""
    tag = f"{next(_tags) % (1 << 16):04x}"
    return [
        {
            "sql": "{{ Dimension('user__state') }} not in ("
            + ",".join(f"'{tag}{i:02d}{k:02d}'" for k in range(85))
            + ")"
        }
        for i in range(20)
    ]


@dataclass
class ClassFigures:
    timings: Timings = field(default_factory=Timings)
    first_error: str | None = None


class LoadClient:
    """One client: a keep-alive connection, one query at a time."""

    def __init__(self, port: int, token: str) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self._headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}

    def _post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables})
        self._connection.request("POST", "/api/graphql", body=body, headers=self._headers)
        answer = json.loads(self._connection.getresponse().read())
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL error: {answer['errors'][0]['message']}")
        return answer["data"]

    def ask(self, kind: str, number: int) -> int:
        """Run one query of the class to the end; its row count (RuntimeError on any failure)."""
        if kind == "heavy":
            created = self._post(CREATE_HEAVY, {"where": heaviest_filters()})
        else:
            saved = SAVED_QUERIES[number % len(SAVED_QUERIES)]
            created = self._post(CREATE_SAVED, {"saved": saved, "cache": kind == "cached"})
        query_id = created["createQuery"]["queryId"]
        while True:
            page = self._post(POLL, {"id": query_id})["query"]
            if page["status"] == "SUCCESSFUL":
                table = pa.ipc.open_stream(base64.b64decode(page["arrowResult"])).read_all()
                return table.num_rows
            if page["status"] == "FAILED":
                raise RuntimeError(f"query failed: {page['error']}")
            time.sleep(0.02)

    def close(self) -> None:
        self._connection.close()


def _client(server: ServerProcess, offset: int, deadline: float, figures: dict[str, ClassFigures]) -> None:
    client = LoadClient(server.port, server.token)
    try:
        for number in itertools.count(offset):
            if time.monotonic() >= deadline:
                return
            kind = CYCLE[number % len(CYCLE)]
            start = time.perf_counter()
            try:
                rows = client.ask(kind, number)
                if rows < 1:
                    raise RuntimeError("an empty answer")
            except (RuntimeError, OSError, http.client.HTTPException) as exc:
                figures[kind].timings.errors += 1
                figures[kind].first_error = figures[kind].first_error or str(exc)[:200]
                client.close()
                client = LoadClient(server.port, server.token)
                continue
            figures[kind].timings.seconds.append(time.perf_counter() - start)
    finally:
        client.close()


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(warehouse_file: Path, clients: int = CLIENTS, seconds: float = SECONDS) -> list[str]:
    """Printable lines: per class n, p50/p95/p99 and errors; throughput; server memory; load."""
    server = ServerProcess(warehouse_file)
    try:
        load_before = _load_average()
        warm = LoadClient(server.port, server.token)
        for number in range(len(SAVED_QUERIES)):
            warm.ask("cached", number)  # the cached class starts from a warm cache
        warm.close()
        figures = {kind: ClassFigures() for kind in dict.fromkeys(CYCLE)}
        deadline = time.monotonic() + seconds
        threads = [
            threading.Thread(target=_client, args=(server, i * 3, deadline, figures), daemon=True)
            for i in range(clients)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        rss = server.rss_mib
    finally:
        server.stop()
    total = sum(len(f.timings.seconds) for f in figures.values())
    errors = sum(f.timings.errors for f in figures.values())
    lines = [
        f"load: {clients} clients × {seconds:.0f} s of mixed GraphQL queries (one at a time per client), "
        f"load average before {load_before}, after {_load_average()} (1/5/15 min)"
    ]
    for kind, figure in figures.items():
        t = figure.timings
        quantiles = "  ".join(f"p{q} {t.percentile(q):8.1f} ms" for q in (50, 95, 99)) if t.seconds else ""
        line = f"  {kind:<8} n={len(t.seconds):5d}  {quantiles}  errors {t.errors}"
        lines.append(line + (f"  (first: {figure.first_error})" if figure.first_error else ""))
    lines.append(
        f"  total {total} queries in {elapsed:.0f} s ({total / elapsed:.1f}/s), {errors} errors; "
        f"server RSS {rss:.0f} MiB at the end"
    )
    return lines


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    parser.add_argument("warehouse_file", type=Path, help="a built and published warehouse")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args(argv)
    for line in run(args.warehouse_file, args.clients, args.seconds):
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

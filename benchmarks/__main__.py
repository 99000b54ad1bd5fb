"""`make bench`: measured figures, printed (never asserted in tests).

Generation time and memory, load time of the course CSVs, `dbt build` wall time, and each
saved query through a warm MetricFlow engine vs `mf query`, at course scale and scales
100 / 1000; then the server (GraphQL), Arrow Flight SQL and Postgres benchmarks, every saved
query against the open peer, sidemantic (benchmarks/peer.py), and the load figure
(benchmarks.load: clients × 60 s of cached, uncached and heavy queries, per class).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import flight as bench_flight
from benchmarks import generate as bench_generate
from benchmarks import load as bench_load
from benchmarks import peer as bench_peer
from benchmarks import server as bench_server
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse.build import build, fresh_raw
from greenery.warehouse.dbt import run_tool
from greenery.warehouse.publish import publish
from greenery.warehouse.replay import REPLAY_WEEKS, replay

SCALES = (100, 1000)


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def build_warehouse(warehouse_file: Path, source: str) -> dict[str, float]:
    """Raw data ('course' or a scale), weeks 1–4 replayed, `dbt build`; seconds per step."""
    if source == "course":
        course_data = Path(os.environ["GREENERY_COURSE_DATA"])
        seconds = {"load": _timed(lambda: fresh_raw(warehouse_file, course_data=course_data))}
    else:
        seconds = {"generate+write": _timed(lambda: fresh_raw(warehouse_file, scale=int(source)))}
    seconds["replay weeks 1-4"] = _timed(
        lambda: replay(REPLAY_WEEKS, from_scratch=True, warehouse_file=warehouse_file)
    )
    seconds["dbt build"] = _timed(lambda: build(warehouse_file))
    return seconds


def _mf_query_seconds(warehouse_file: Path, saved_query: str, runs: int = 3) -> float:
    def ask() -> None:
        run_tool(
            "mf", ["query", "--saved-query", saved_query, "--quiet"], warehouse_file=warehouse_file
        ).check_returncode()

    return statistics.median(_timed(ask) for _ in range(runs))


def saved_query_lines(warehouse_file: Path, label: str) -> list[str]:
    """Median time per saved query: warm engine (10 runs) vs `mf query` (3 runs)."""
    lines = [f"saved queries at {label} (median; warm MetricFlow engine vs `mf query` CLI):"]
    with SemanticLayer(warehouse_file) as layer:
        names = layer.saved_query_names
        warm = {}
        for name in names:
            layer.query(saved_query=name)  # first call plans and caches
            warm[name] = statistics.median(layer.query(saved_query=name).seconds for _ in range(10))
    for name in names:
        cli = _mf_query_seconds(warehouse_file, name)
        lines.append(f"  {name:<40} engine {warm[name] * 1000:7.1f} ms   mf query {cli:6.2f} s")
    return lines


def run() -> None:
    print("== generation (one fresh process per scale)")
    for line in bench_generate.run():
        print(line)
    with tempfile.TemporaryDirectory(prefix="greenery-bench-") as tmp:
        sources = (["course"] if os.environ.get("GREENERY_COURSE_DATA") else []) + [str(s) for s in SCALES]
        built = {}
        for source in sources:
            warehouse_file = Path(tmp) / source / "greenery.duckdb"
            seconds = build_warehouse(warehouse_file, source)
            built[source] = warehouse_file
            label = "course data" if source == "course" else f"scale {source}"
            print(f"== {label}: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()), flush=True)
        for source in (s for s in ("course", "1000") if s in built):
            label = "course scale" if source == "course" else "scale 1000"
            for line in saved_query_lines(built[source], label):
                print(line, flush=True)
        for source in (s for s in ("course", "1000") if s in built):
            publish(built[source])
            print(f"== server at {source}", flush=True)
            for line in bench_server.run(built[source]):
                print(line, flush=True)
        if "1000" in built:
            print("== Arrow Flight SQL and Postgres vs GraphQL at scale 1000", flush=True)
            for line in bench_flight.run(built["1000"]):
                print(line, flush=True)
            for line in bench_peer.run(built["1000"]):
                print(line, flush=True)
        loaded = "course" if "course" in built else sources[0]
        if loaded != "course":
            publish(built[loaded])
        print(f"== load at {loaded}", flush=True)
        for line in bench_load.run(built[loaded]):
            print(line, flush=True)


if __name__ == "__main__":
    run()

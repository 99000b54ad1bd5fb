"""`greenery demo` (what `make demo` runs): the main job end to end, with progress per step.

Data (the course export when GREENERY_COURSE_DATA points at one, else the generator at
scale 1, which reproduces the course's aggregates) → weekly snapshot replay → build →
semantic-layer validation → exports → publish for readers → answers report and charts.
Every run rebuilds the warehouse from scratch; it stops at the first failing step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from greenery.report.render import ReportPaths, write_report
from greenery.semantic.exports import run_exports
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store
from greenery.warehouse.build import build, fresh_raw
from greenery.warehouse.dbt import run_tool
from greenery.warehouse.lock import exclusive
from greenery.warehouse.publish import publish
from greenery.warehouse.replay import REPLAY_WEEKS, replay

COURSE_DATA_ENV = "GREENERY_COURSE_DATA"


class DemoError(RuntimeError):
    """A demo step failed; the message names the step."""


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], str | None]  # returns a short result to print, if any


def _fresh_data() -> str:
    warehouse_file = store.resolve()
    for stale in (warehouse_file, warehouse_file.with_name(warehouse_file.name + ".wal")):
        stale.unlink(missing_ok=True)
    folder = os.environ.get(COURSE_DATA_ENV)
    counts = fresh_raw(course_data=Path(folder) if folder else None)
    source = f"course export from {folder}" if folder else "generator, scale 1"
    return f"{source}: {counts['events']:,} events, {counts['orders']:,} orders"


def _replay() -> str:
    results = replay(REPLAY_WEEKS, from_scratch=True)
    return f"{sum(r.replayed for r in results)} weekly snapshots"


def _build() -> None:
    build()


def _validate() -> str:
    done = run_tool("mf", ["validate-configs"])
    if done.returncode != 0 or "ERRORS: 0" not in done.stdout:
        raise DemoError(f"mf validate-configs failed:\n{done.stdout}{done.stderr}")
    return "mf validate-configs: 0 errors"


def _export() -> str:
    results = run_exports(parquet_dir=store.OUTPUT_DIR / "exports")
    failed = [f"{r.spec.saved_query}: {r.error}" for r in results if r.error]
    if failed:
        raise DemoError("exports failed: " + "; ".join(failed))
    return f"{len(results)} exports → schema exports and output/exports/*.parquet"


def _publish() -> str:
    return f"readers now see {publish().name}"


def _report() -> str:
    paths = ReportPaths.for_warehouse()
    with SemanticLayer() as layer:
        write_report(layer, paths)
    written = [*paths.markdown_files(), paths.images / "*.png", paths.html]
    return ", ".join(str(p.relative_to(store.PROJECT_DIR)) for p in written)


STEPS = [
    Step("raw data", _fresh_data),
    Step("snapshots: replay weeks 1–4", _replay),
    Step("greenery build (dbt build: models, snapshot, tests)", _build),
    Step("semantic layer: validate", _validate),
    Step("saved-query exports", _export),
    Step("publish for readers", _publish),
    Step("answers report and charts", _report),
]

NEXT = """
Where to look:
  docs/answers.md           the course's answers with charts, in brief in README.md
                            (regenerated when GREENERY_COURSE_DATA is set; from other data they go
                            to output/answers.md and output/images/)
  output/report.html        the answers from this run as an interactive page
  output/exports/           every saved query's export as Parquet
  warehouse/greenery.duckdb the warehouse (marts, snapshots, exports); raw data in warehouse/raw.duckdb

Try next (from the repo root, with .venv/bin on PATH):
  mf query --saved-query funnel_by_week
  mf query --metrics sessions_with_checkout,view_to_checkout_rate --group-by metric_time__day
  mf query --metrics product_view_to_purchase_rate --group-by product__product_name \\
           --order -product_view_to_purchase_rate
  mf query --metrics inventory_on_hand --group-by product__product_name,metric_time__week
  greenery serve            the semantic-layer API and the dashboard on http://127.0.0.1:8000/dashboard
"""


def run_demo(steps: list[Step] = STEPS) -> None:
    """The steps in order, holding the warehouse lock throughout (no other step in between)."""
    started = time.perf_counter()
    with exclusive(store.resolve(), "demo"):
        for number, step in enumerate(steps, start=1):
            print(f"[{number}/{len(steps)}] {step.name} …", flush=True)
            t0 = time.perf_counter()
            try:
                result = step.run()
            except Exception as exc:
                raise DemoError(f"step {number} ({step.name}) failed: {exc}") from exc
            note = f" — {result}" if result else ""
            print(f"      ok in {time.perf_counter() - t0:.1f} s{note}", flush=True)
    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s.{NEXT}")

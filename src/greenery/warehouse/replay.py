"""The weekly snapshot replay: each week's inventory into raw products, then `dbt snapshot`.

The course's inventory changed week by week; the replay writes each week's state into
``raw.public.products`` together with that week's time in ``raw.replay.clock``, and runs the
products snapshot, which records the clock's time instead of today. Afterwards the raw
products and the clock hold the newest week the snapshot has seen, so any later build or
snapshot (`greenery build` or plain `dbt build`) adds no version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from greenery.data.load import MAX_WEEK
from greenery.warehouse import store
from greenery.warehouse.dbt import run_dbt_module
from greenery.warehouse.lock import exclusive

SNAPSHOT_RELATION = "snapshots.products_snapshot"
SNAPSHOT_RUNS = "snapshots.snapshot_runs"  # written by macros/record_snapshot_run.sql
WORKER = "greenery.warehouse.replay_worker"  # the child process that snapshots the weeks
REPLAY_WEEKS = range(1, 5)  # the course's weeks; what the demo, tests and benchmarks replay


@dataclass(frozen=True)
class WeekResult:
    week: int
    recorded_at: pd.Timestamp
    replayed: bool


def parse_weeks(text: str) -> list[int]:
    """'1-4' → [1, 2, 3, 4]; '3' → [3]; '1,3' → [1, 3]."""
    weeks: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        start, end = _week(first, text), _week(last or first, text)
        weeks.extend(range(start, end + 1))
    if not weeks:
        raise ValueError(f"--weeks {text!r}: no week in the range")
    return weeks


def _week(number: str, text: str) -> int:
    try:
        week = int(number)
    except ValueError:
        raise ValueError(f"--weeks {text!r}: expected a week or a range such as 1-4") from None
    if not 1 <= week <= MAX_WEEK:
        raise ValueError(f"--weeks {text!r}: weeks go from 1 to {MAX_WEEK}")
    return week


def weekly_states(warehouse_file: Path | None = None) -> pd.DataFrame:
    """Every product's state week by week, as the loader stored it (``raw.replay``), ids as text."""
    con = store.open_duckdb(store.raw_path(warehouse_file), read_only=True, warehouse_file=warehouse_file)
    try:
        return con.execute(
            "select * replace (cast(product_id as varchar) as product_id)"
            f" from {store.REPLAY_SCHEMA}.product_inventory_by_week order by week, product_id"
        ).df()
    finally:
        con.close()


def last_snapshot_run(
    warehouse_file: Path | None = None, *, from_scratch: bool = False
) -> pd.Timestamp | None:
    """When the products snapshot last looked at the source; with from_scratch, forget its history first."""
    con = store.open_duckdb(store.resolve(warehouse_file), warehouse_file=warehouse_file)
    try:
        if from_scratch:
            for relation in (SNAPSHOT_RELATION, SNAPSHOT_RUNS):
                con.execute(f"drop table if exists {relation}")
            return None
        if not store.table_exists(con, SNAPSHOT_RUNS):
            return None
        last = con.execute(f"select max(snapshot_at) from {SNAPSHOT_RUNS}").fetchone()[0]
        return pd.Timestamp(last) if last is not None else None
    finally:
        con.close()


def week_rows(states: pd.DataFrame, week: int) -> tuple[pd.DataFrame, pd.Timestamp]:
    """One week's products (the columns of raw products) and the time they were recorded."""
    rows = states[states["week"] == week]
    return rows[["product_id", "name", "price", "inventory"]], week_recorded_at(states, week)


def week_recorded_at(states: pd.DataFrame, week: int) -> pd.Timestamp:
    """When one week's inventory was recorded."""
    return pd.Timestamp(states.loc[states["week"] == week, "recorded_at"].iloc[0])


def replay(
    weeks: Sequence[int], *, from_scratch: bool = False, warehouse_file: Path | None = None
) -> list[WeekResult]:
    """Snapshot each week's inventory at that week's time; raw products end at the newest week seen.

    A week the snapshot already covers (recorded at or before its latest run) is skipped, so
    re-running a week adds no versions. ``from_scratch`` drops the snapshot first.
    """
    warehouse_file = store.resolve(warehouse_file)
    with exclusive(warehouse_file, "replay"):
        return _replay(weeks, from_scratch, warehouse_file)


def _replay(weeks: Sequence[int], from_scratch: bool, warehouse_file: Path) -> list[WeekResult]:
    raw = store.raw_path(warehouse_file)
    if not raw.exists():
        raise ValueError(f"no raw data at {raw}: run `greenery load` or `greenery generate` first")
    states = weekly_states(warehouse_file)
    known = sorted(states["week"].unique())
    missing = [w for w in weeks if w not in known]
    if missing:
        raise ValueError(
            f"week(s) {', '.join(map(str, missing))} not in the weekly inventory "
            f"(the loaded data has weeks {known[0]}–{known[-1]})"
        )
    last = last_snapshot_run(warehouse_file, from_scratch=from_scratch)
    results = []
    for week in weeks:
        recorded_at = week_recorded_at(states, week)
        replayed = last is None or recorded_at > last
        last = recorded_at if replayed else last
        results.append(WeekResult(week, recorded_at, replayed))
    _snapshot([r.week for r in results if r.replayed], warehouse_file)
    _settle_raw_products(states, last, results, warehouse_file)
    return results


def _snapshot(weeks: list[int], warehouse_file: Path) -> None:
    """Each week's products then `dbt snapshot`, in one child process (`replay_worker`)."""
    if weeks:
        what = f"`dbt snapshot` of week(s) {', '.join(map(str, weeks))}"
        run_dbt_module(WORKER, [str(week) for week in weeks], what=what, warehouse_file=warehouse_file)


def _settle_raw_products(
    states: pd.DataFrame, last: pd.Timestamp | None, results: list[WeekResult], warehouse_file: Path
) -> None:
    """Leave raw products and the clock at the newest week the snapshot has seen.

    After a reload (raw products back at the export's state) a replay of weeks already in the
    snapshot skips them all; without this, the next build would snapshot the reloaded state
    as a spurious new version.
    """
    seen = states[states["recorded_at"] <= last] if last is not None else states.iloc[0:0]
    if seen.empty:
        return
    newest = int(seen["week"].max())
    if results and results[-1].replayed and results[-1].week == newest:
        return  # the loop just wrote it
    store.replace_products(*week_rows(states, newest), warehouse_file)

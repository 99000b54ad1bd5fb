"""dbt runs of the project: invocations in-process, and the weekly snapshot replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from greenery import warehouse

PROJECT_DIR = warehouse.PROJECT_DIR
SNAPSHOT_RELATION = "snapshots.products_snapshot"
REPLAY_WEEKS = range(1, 5)  # the course's weeks; what the demo, tests and benchmarks replay


class DbtError(RuntimeError):
    """A dbt command failed; the message names the command and what failed."""


def run_tool(tool: str, args: Sequence[str], *, wh: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the venv's `dbt` or `mf` from the repo root against the warehouse; output captured.

    In a child process: dbt-duckdb keeps its DuckDB handles open for the life of the process,
    which would lock the raw catalog against the replay's writes between two snapshots.
    """
    env = {**os.environ, warehouse.ENV_VAR: str(wh or warehouse.warehouse_path())}
    executable = Path(sys.executable).with_name(tool)
    return subprocess.run([str(executable), *args], env=env, cwd=PROJECT_DIR, capture_output=True, text=True)


def run_dbt(args: Sequence[str], *, wh: Path | None = None) -> None:
    """Run one dbt command against the project and its profiles.yml; raise DbtError on failure."""
    flags = ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR)]
    done = run_tool("dbt", ["--quiet", *args, *flags], wh=wh)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise DbtError(f"`dbt {' '.join(args)}` failed (exit {done.returncode})\n{output}")


@dataclass(frozen=True)
class WeekResult:
    week: int
    recorded_at: pd.Timestamp
    replayed: bool


def fresh_raw(wh: Path | None = None, *, course_data: Path | None = None, scale: int = 1) -> dict[str, int]:
    """Replace the raw catalog: the course CSVs when given, else generated data at `scale`."""
    if course_data is not None:
        from greenery.loader import load_csv_folder

        return load_csv_folder(course_data, wh)
    from greenery.generate import generate

    return warehouse.write_raw(generate(scale=scale), wh)


def rebuild(wh: Path | None = None, *, course_data: Path | None = None, scale: int = 1) -> None:
    """Raw data, weeks 1–4 replayed into a fresh snapshot, `dbt build`: the demo's warehouse."""
    fresh_raw(wh, course_data=course_data, scale=scale)
    replay(REPLAY_WEEKS, from_scratch=True, wh=wh)
    build(wh)


def parse_weeks(text: str) -> list[int]:
    """'1-4' → [1, 2, 3, 4]; '3' → [3]; '1,3' → [1, 3]."""
    weeks: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            weeks.extend(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ValueError(f"--weeks {text!r}: expected a week or a range such as 1-4") from None
    if not weeks or min(weeks) < 1:
        raise ValueError(f"--weeks {text!r}: weeks start at 1")
    return weeks


def _weekly_states(wh: Path) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse.raw_path(wh)), read_only=True)
    try:
        return con.execute(
            f"select * from {warehouse.REPLAY_SCHEMA}.product_inventory_by_week order by week, product_id"
        ).df()
    finally:
        con.close()


SNAPSHOT_RUNS = "snapshots.snapshot_runs"  # written by macros/record_snapshot_run.sql


def _table_exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    schema, name = relation.split(".")
    query = "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    return con.execute(query, [schema, name]).fetchone()[0] > 0


def last_snapshot_run(wh: Path | None = None, *, from_scratch: bool = False) -> pd.Timestamp | None:
    """When the products snapshot last looked at the source; with from_scratch, forget its history first."""
    con = duckdb.connect(str(wh or warehouse.warehouse_path()))
    try:
        if from_scratch:
            for relation in (SNAPSHOT_RELATION, SNAPSHOT_RUNS):
                con.execute(f"drop table if exists {relation}")
            return None
        if not _table_exists(con, SNAPSHOT_RUNS):
            return None
        last = con.execute(f"select max(snapshot_at) from {SNAPSHOT_RUNS}").fetchone()[0]
        return pd.Timestamp(last) if last is not None else None
    finally:
        con.close()


def _snapshot_vars(at: pd.Timestamp) -> list[str]:
    return ["--vars", json.dumps({"snapshot_at": at.isoformat(sep=" ")})]


def build(wh: Path | None = None) -> None:
    """`dbt build`, its snapshot pinned to the last snapshot run when there is one.

    After a replay the warehouse describes the replayed past: pinning keeps the build's own
    snapshot run on that date instead of recording "today" into the history.
    """
    last = last_snapshot_run(wh)
    run_dbt(["build", *(_snapshot_vars(last) if last is not None else [])], wh=wh)


def replay(weeks: Sequence[int], *, from_scratch: bool = False, wh: Path | None = None) -> list[WeekResult]:
    """Write each week's inventory into raw.public.products, then snapshot it at that week's time.

    A week the snapshot already covers (recorded at or before its latest time) is skipped, so
    re-running a week adds no versions. ``from_scratch`` drops the snapshot first.
    """
    wh = wh or warehouse.warehouse_path()
    if not warehouse.raw_path(wh).exists():
        raise ValueError(
            f"no raw data at {warehouse.raw_path(wh)}: run `greenery load` or `greenery generate` first"
        )
    states = _weekly_states(wh)
    known = sorted(states["week"].unique())
    missing = [w for w in weeks if w not in known]
    if missing:
        raise ValueError(
            f"week(s) {', '.join(map(str, missing))} not in the weekly inventory "
            f"(the loaded data has weeks {known[0]}–{known[-1]})"
        )
    last = last_snapshot_run(wh, from_scratch=from_scratch)
    results = []
    for week in weeks:
        rows = states[states["week"] == week]
        recorded_at = pd.Timestamp(rows["recorded_at"].iloc[0])
        if last is not None and recorded_at <= last:
            results.append(WeekResult(week, recorded_at, replayed=False))
            continue
        warehouse.replace_products(rows[["product_id", "name", "price", "inventory"]], wh)
        run_dbt(["snapshot", *_snapshot_vars(recorded_at)], wh=wh)
        last = recorded_at
        results.append(WeekResult(week, recorded_at, replayed=True))
    return results

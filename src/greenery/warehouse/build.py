"""The warehouse from raw data to marts: fresh raw data, the weekly replay, `greenery build`."""

from __future__ import annotations

import json
from pathlib import Path

from greenery.data.generate import generate
from greenery.data.load import read_arrivals, read_folder
from greenery.warehouse import store
from greenery.warehouse.dbt import run_dbt
from greenery.warehouse.replay import REPLAY_WEEKS, replay


def fresh_raw(
    warehouse_file: Path | None = None, *, course_data: Path | None = None, scale: int = 1
) -> dict[str, int]:
    """Replace the raw catalog: the course CSVs when given, else generated data at `scale`."""
    if course_data is not None:
        return store.write_raw(read_folder(course_data).items(), warehouse_file)
    return store.write_raw(generate(scale=scale), warehouse_file)


def append_csv(folder: Path, warehouse_file: Path | None = None) -> dict[str, int]:
    """Append a folder of new rows (some of the seven course CSVs) to the raw catalog, all or
    nothing; returns rows appended per table. The next `build` picks them up incrementally."""
    return store.append_raw(read_arrivals(folder).items(), warehouse_file)


def build(
    warehouse_file: Path | None = None, *, full_refresh: bool = False, lookback_days: float | None = None
) -> None:
    """`dbt build`: models, the products snapshot and every test.

    The session facts are incremental (docs/dbt-project.md): a build recomputes only the
    sessions of users with events in the lookback window (`lookback_days`, default the
    project's `incremental_lookback_days`); `full_refresh` rebuilds them from every event.

    After a replay the snapshot records the replayed time, not today: the replay leaves its
    clock in the raw catalog (``raw.replay.clock``) and the snapshot reads it (see
    macros/snapshot_get_time.sql), so a plain `dbt build` is just as safe.
    """
    args = ["build"]
    if full_refresh:
        args.append("--full-refresh")
    if lookback_days is not None:
        args += ["--vars", json.dumps({"incremental_lookback_days": lookback_days})]
    run_dbt(args, warehouse_file=warehouse_file)


def rebuild(warehouse_file: Path | None = None, *, course_data: Path | None = None, scale: int = 1) -> None:
    """Raw data, weeks 1–4 replayed into a fresh snapshot, `dbt build`: the demo's warehouse."""
    fresh_raw(warehouse_file, course_data=course_data, scale=scale)
    replay(REPLAY_WEEKS, from_scratch=True, warehouse_file=warehouse_file)
    build(warehouse_file)

"""The warehouse from raw data to marts: fresh raw data, the weekly replay, `greenery build`.

A build that does not finish (killed, or dbt failed) leaves its marker beside the warehouse
(`build_marker_path`): its tables may be half-built, and `greenery publish` refuses to
publish them until a `greenery build` succeeds.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from greenery.data.generate import DEFAULT_SEED, Generation, generate
from greenery.data.load import read_arrivals, read_folder
from greenery.warehouse import store
from greenery.warehouse.dbt import DbtError, run_dbt
from greenery.warehouse.lock import exclusive
from greenery.warehouse.replay import REPLAY_WEEKS, replay

# dbt's threads: models built at once. A full build's event-grained models each need DuckDB's
# whole memory (scale 10000: 622 s two at a time, 513 s one at a time); an incremental build's
# nodes are small, and two at a time hide each other's latency (79 s against 54 s).
FULL_BUILD_THREADS = 1
INCREMENTAL_THREADS = 2
# what dbt says when an incremental model (on_schema_change='fail') no longer has the columns
# of the table it would add to
SCHEMA_CHANGED = "The source and target schemas on this incremental model are out of sync"


def fresh_raw(
    warehouse_file: Path | None = None,
    *,
    course_data: Path | None = None,
    scale: int = 1,
    seed: int = DEFAULT_SEED,
) -> dict[str, int]:
    """Replace the raw catalog: the course CSVs when given, else generated data at `scale` from
    `seed`, which the raw catalog records (`store.raw_generation`)."""
    if course_data is not None:
        return store.write_raw(read_folder(course_data).items(), warehouse_file)
    made = Generation(scale=scale, seed=seed)
    return store.write_raw(generate(scale=scale, seed=seed), warehouse_file, generation=made)


def append_csv(folder: Path, warehouse_file: Path | None = None) -> dict[str, int]:
    """Append a folder of new rows (some of the seven course CSVs) to the raw catalog, all or
    nothing; returns rows appended per table. The next `build` picks them up incrementally."""
    return store.append_raw(read_arrivals(folder).items(), warehouse_file)


def built_from_path(warehouse_file: Path | None = None) -> Path:
    """Beside the warehouse: the id of the raw load its incremental models were built from."""
    path = store.resolve(warehouse_file)
    return path.with_name(f"{path.name}.built-from")


def copy_warehouse(source: Path, destination: Path, *, built_from: bool = False) -> Path:
    """A built warehouse copied to `destination` with its raw catalog (and, with `built_from`,
    the record of the raw load its incremental models were built from); returns `destination`.
    For a second warehouse of the same data (tests, the bench's full-refresh check)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, destination)
    shutil.copy(store.raw_path(source), store.raw_path(destination))
    if built_from and built_from_path(source).exists():
        shutil.copy(built_from_path(source), built_from_path(destination))
    return destination


def build_marker_path(warehouse_file: Path | None = None) -> Path:
    """Beside the warehouse while a build runs, and after one that did not finish."""
    path = store.resolve(warehouse_file)
    return path.with_name(f"{path.name}.building")


def unfinished_build(warehouse_file: Path | None = None) -> str | None:
    """How the last build that did not finish started ("pid 12, 2026-01-02 03:04:05 UTC"), or
    None when the last build finished (or none ever ran through `build`)."""
    marker = build_marker_path(warehouse_file)
    try:
        started = json.loads(marker.read_text() or "{}")
    except FileNotFoundError:
        return None
    except ValueError:  # killed while writing its marker
        started = {}
    return f"pid {started.get('pid', '?')}, {started.get('started_at', 'time unknown')}"


@dataclass(frozen=True)
class DbtBuild:
    """The `dbt build` to run: its arguments, and whether it is a full refresh."""

    args: list[str]
    full_refresh: bool


@contextmanager
def dbt_build(
    warehouse_file: Path | None = None,
    *,
    full_refresh: bool = False,
    lookback_days: float | None = None,
    incremental: bool = True,
) -> Iterator[DbtBuild]:
    """Everything around a `dbt build` but running it, for whoever runs it (`build`, the
    orchestrator): the warehouse lock, the full-refresh rule, the build marker.

    When the build includes the incremental models (`incremental`), it is a full refresh if
    asked or if the raw data was replaced since they were built (the raw load's id differs
    from the one they were built from). The block runs dbt; only when it ends without an
    exception is the build recorded as finished (marker removed, raw load id noted), so a
    killed or failed build stays unpublishable.
    """
    with exclusive(store.resolve(warehouse_file), "build"):
        raw = store.raw_path(warehouse_file)
        if not raw.exists():
            raise ValueError(
                f"no raw data at {raw} to build from: first `greenery load --from-csv DIR`"
                " or `greenery generate`, then `greenery replay`"
            )
        load_id = store.raw_load_id(warehouse_file)
        built_from = built_from_path(warehouse_file)
        previous = built_from.read_text() if built_from.is_file() else None
        full_refresh = full_refresh or (incremental and (load_id is None or load_id != previous))
        args = ["build", "--threads", str(FULL_BUILD_THREADS if full_refresh else INCREMENTAL_THREADS)]
        if full_refresh:
            args.append("--full-refresh")
        if lookback_days is not None:
            args += ["--vars", json.dumps({"incremental_lookback_days": lookback_days})]
        marker = build_marker_path(warehouse_file)
        started_at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        marker.write_text(json.dumps({"pid": os.getpid(), "started_at": started_at}))
        if incremental:
            built_from.unlink(missing_ok=True)  # a failed build leaves no claim behind
        yield DbtBuild(args, full_refresh)  # on an exception here, the marker stays
        if incremental and load_id is not None:
            built_from.write_text(load_id)
        marker.unlink()


def build(
    warehouse_file: Path | None = None, *, full_refresh: bool = False, lookback_days: float | None = None
) -> bool:
    """`dbt build`: models, the products snapshot and every test; True when it was a full refresh.

    The session facts are incremental (docs/dbt-project.md): a build recomputes only the
    sessions of users with events in the lookback window (`lookback_days`, default the
    project's `incremental_lookback_days`); `full_refresh` rebuilds them from every event, and
    so does the first build after the raw data was replaced (`greenery load` without
    `--append`, `greenery generate`): appends keep the raw load's id, a new load changes it.

    After a replay the snapshot records the replayed time, not today: the replay leaves its
    clock in the raw catalog (``raw.replay.clock``) and the snapshot reads it (see
    macros/snapshot_get_time.sql), so a plain `dbt build` is just as safe.
    """
    with dbt_build(warehouse_file, full_refresh=full_refresh, lookback_days=lookback_days) as plan:
        try:
            run_dbt(plan.args, warehouse_file=warehouse_file)
        except DbtError as error:
            raise DbtError(with_rebuild_hint(str(error), "`greenery build --full-refresh`")) from error
    return plan.full_refresh


def with_rebuild_hint(message: str, rebuild: str) -> str:
    """A failed dbt build's `message`, with how to rebuild (`rebuild`) when dbt refused to add to
    an incremental table whose columns the project has changed since it was built."""
    if SCHEMA_CHANGED not in message:
        return message
    return (
        f"{message}\n\nAn incremental model's columns changed with the project since the warehouse"
        f" was built: rebuild them with {rebuild}."
    )


def rebuild(warehouse_file: Path | None = None, *, course_data: Path | None = None, scale: int = 1) -> None:
    """Raw data, weeks 1–4 replayed into a fresh snapshot, `dbt build`: the demo's warehouse."""
    with exclusive(store.resolve(warehouse_file), "build"):
        fresh_raw(warehouse_file, course_data=course_data, scale=scale)
        replay(REPLAY_WEEKS, from_scratch=True, warehouse_file=warehouse_file)
        build(warehouse_file)

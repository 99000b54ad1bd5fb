"""Steps killed mid-run (SIGKILL) lose nothing and leave nothing behind.

`greenery load`, `build`, `publish`, `export` and `generate --next-days` run as real
subprocesses on a copy of the course warehouse and are killed half-way: load, publish, export
and the next days at their last move (from the temporary name to the real one), where
tests/faults/sitecustomize.py holds them; build while dbt is writing. After each kill:
readers of the published copy (one opened before the fault, one opened after) still answer
the course funnel, the next run of the step succeeds without manual cleanup, no temporary
file or folder remains, and a killed build is never published. While one step runs, another
is refused with a message naming it (the lock). Against a crash of the machine, which no
test here can cause, a published version is on disk (fsynced) before CURRENT names it, and
new raw data and a Parquet export before they take their names.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from test_server import FUNNEL

from conftest import read_sql
from greenery.semantic.exports import run_exports
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store
from greenery.warehouse.arrivals import write_next_days
from greenery.warehouse.build import build_marker_path, copy_warehouse, fresh_raw
from greenery.warehouse.publish import current_published, publish

GREENERY = Path(sys.executable).with_name("greenery")
FAULTS = Path(__file__).parent / "faults"  # holds the sitecustomize that pauses a step
PAUSE_ENV = "GREENERY_TEST_PAUSE_AT"
COURSE_FUNNEL = [578, 467, 361]
WAIT_S = 180  # at most, for a step to reach the point where it is killed


@pytest.fixture
def warehouse(course_warehouse: Path, tmp_path: Path) -> Path:
    """A copy of the built course warehouse (with its raw catalog), published once."""
    copy = copy_warehouse(course_warehouse, tmp_path / "warehouse" / course_warehouse.name, built_from=True)
    publish(copy)
    return copy


@pytest.fixture
def reader(warehouse: Path) -> Iterator[SemanticLayer]:
    """A reader that opened the published copy before any fault, as a running server has."""
    layer = SemanticLayer.published(warehouse)
    yield layer
    layer.close()


def _env(warehouse: Path, pause_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, store.ENV_VAR: str(warehouse), "PYTHONPATH": str(FAULTS)}
    env.pop(PAUSE_ENV, None)
    if pause_at is not None:
        env[PAUSE_ENV] = pause_at
    return env


def greenery(warehouse: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One `greenery` command run to its end."""
    return subprocess.run(
        [str(GREENERY), *args], env=_env(warehouse), capture_output=True, text=True, timeout=600
    )


def start(warehouse: Path, *args: str, pause_at: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(GREENERY), *args],
        env=_env(warehouse, pause_at),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when(step: subprocess.Popen[str], ready: Callable[[], bool], delay_s: float = 0.0) -> None:
    """SIGKILL `step` once `ready()` holds (and `delay_s` more), asserting it was still running."""
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if step.poll() is not None:
            out, err = step.communicate()
            pytest.fail(f"the step ended (exit {step.returncode}) before it could be killed:\n{out}{err}")
        assert time.monotonic() < deadline, "the step never reached the point where it is killed"
        time.sleep(0.05)
    time.sleep(delay_s)
    assert step.poll() is None, "the step finished before the kill"
    step.send_signal(signal.SIGKILL)
    step.communicate(timeout=30)
    assert step.returncode == -signal.SIGKILL


def funnel(layer: SemanticLayer) -> list[int]:
    table = layer.query(metrics=FUNNEL).table
    return [int(table[m][0].as_py()) for m in FUNNEL]


def assert_readers_answer(warehouse: Path, reader: SemanticLayer) -> None:
    """The reader opened before the fault, and one opening the current published copy now."""
    assert funnel(reader) == COURSE_FUNNEL
    fresh = SemanticLayer.published(warehouse)
    try:
        assert funnel(fresh) == COURSE_FUNNEL
    finally:
        fresh.close()


def temp_leftovers(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.name.endswith((".tmp", ".tmp.wal"))]


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (from /proc/<pid>/stat: after the name, state
    and parent id)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                state, parent = (proc / "stat").read_text().rpartition(")")[2].split()[:2]
                if int(parent) == pid and state != "Z":
                    found.append(int(proc.name))
        except (OSError, ValueError):  # gone meanwhile
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_killed_load_keeps_the_raw_data_and_the_next_load_cleans_up(
    warehouse: Path, reader: SemanticLayer, course_data: Path
) -> None:
    before = store.raw_load_id(warehouse)
    folder = warehouse.parent
    loading = start(warehouse, "load", "--from-csv", str(course_data), pause_at=f".{store.RAW_FILE}.")

    kill_when(loading, lambda: bool(list(folder.glob(f".{store.RAW_FILE}.*.tmp"))))

    assert temp_leftovers(folder)  # killed with its catalog written aside
    assert store.raw_load_id(warehouse) == before  # the raw catalog readers and builds use is intact
    assert_readers_answer(warehouse, reader)
    again = greenery(warehouse, "load", "--from-csv", str(course_data))
    assert again.returncode == 0, again.stderr
    assert store.raw_load_id(warehouse) not in (None, before)
    assert store.raw_counts(warehouse)["events"] == 3553
    assert temp_leftovers(folder) == []


def test_killed_next_days_leave_no_part_of_a_day_to_append(warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "next-day"
    generating = start(warehouse, "generate", "--next-days", "1", "--out", str(out), pause_at=".next-day.tmp")

    # killed with every CSV written aside, before the folder takes its name
    kill_when(generating, lambda: (tmp_path / ".next-day.tmp" / "events.csv").exists())

    assert not out.exists()
    refused = greenery(warehouse, "load", "--append", "--from-csv", str(out))
    assert refused.returncode == 1 and str(out) in refused.stderr
    assert "Traceback" not in refused.stderr
    again = greenery(warehouse, "generate", "--next-days", "1", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert temp_leftovers(tmp_path) == []
    assert sorted(p.name for p in out.iterdir()) == ["events.csv", "order_items.csv", "orders.csv"]
    appended = greenery(warehouse, "load", "--append", "--from-csv", str(out))
    assert appended.returncode == 0, appended.stderr


def test_killed_build_is_never_published(warehouse: Path, reader: SemanticLayer) -> None:
    published = current_published(warehouse)
    building = start(warehouse, "build")

    dbt: list[int] = []

    def dbt_running() -> bool:
        dbt[:] = children_of(building.pid)
        return build_marker_path(warehouse).exists() and bool(dbt)

    # killed while its dbt is writing the warehouse (a full build takes ~20 s here)
    kill_when(building, dbt_running, delay_s=6)

    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in dbt) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in dbt), "dbt outlived the killed `greenery build`"
    refused = greenery(warehouse, "publish")
    assert refused.returncode == 1
    assert "did not finish" in refused.stderr and "run `greenery build`" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert current_published(warehouse) == published
    assert_readers_answer(warehouse, reader)

    rebuilt = greenery(warehouse, "build")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert not build_marker_path(warehouse).exists()
    republished = greenery(warehouse, "publish")
    assert republished.returncode == 0, republished.stderr
    assert current_published(warehouse) != published
    assert_readers_answer(warehouse, reader)
    assert temp_leftovers(warehouse.parent) == []


def test_killed_publish_keeps_readers_on_the_previous_version(warehouse: Path, reader: SemanticLayer) -> None:
    published = current_published(warehouse)
    assert published is not None
    root = published.parent
    publishing = start(warehouse, "publish", pause_at=f"{root}/.v")

    # while it holds the warehouse, other steps are refused at once, with who holds it
    kill_when(publishing, lambda: bool(list(root.glob(".v*.tmp"))) and _busy(warehouse, publishing.pid))

    assert current_published(warehouse) == published
    assert [p.name for p in temp_leftovers(root)]  # its half-made version, never named by CURRENT
    assert_readers_answer(warehouse, reader)
    again = greenery(warehouse, "publish")
    assert again.returncode == 0, again.stderr
    assert current_published(warehouse) != published
    assert temp_leftovers(warehouse.parent) == []
    assert_readers_answer(warehouse, reader)


def record_moves(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """From now on in this process, in order: each fsync (with the path it synced), rename and
    replace (with where it moved to)."""
    done: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd: int) -> None:
        done.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: Path, dst: Path) -> None:
        done.append(("rename", os.fspath(dst)))
        real_rename(src, dst)

    def replace(src: Path, dst: Path) -> None:
        done.append(("replace", os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    return done


def test_a_published_version_is_on_disk_before_current_names_it(
    warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each move is made after the disk holds what it names: the version's files and folder
    before the version is named, the version's name and the new pointer before CURRENT."""
    done = record_moves(monkeypatch)
    version = publish(warehouse).resolve()
    root, staging = version.parent, version.parent / f".{version.name}.tmp"
    assert done == [
        ("fsync", str(staging / warehouse.name)),
        ("fsync", str(staging / "semantic_manifest.json")),
        ("fsync", str(staging)),
        ("replace", str(version)),
        ("fsync", str(root)),
        ("fsync", str(root / ".CURRENT.tmp")),
        ("replace", str(root / "CURRENT")),
        ("fsync", str(root)),
    ]
    assert current_published(warehouse).resolve() == version


def test_a_parquet_export_is_on_disk_before_it_takes_its_name(
    warehouse: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    parquet = (tmp_path / "parquet").resolve()
    done = record_moves(monkeypatch)
    [result] = run_exports(warehouse, select=["funnel_overall"], parquet_dir=parquet)
    assert result.error is None
    assert [(move, path) for move, path in done if path.startswith(str(parquet))] == [
        ("fsync", str(parquet / ".funnel_overall.parquet.tmp")),
        ("replace", str(parquet / "funnel_overall.parquet")),
        ("fsync", str(parquet)),
    ]
    assert pd.read_parquet(parquet / "funnel_overall.parquet")[FUNNEL].iloc[0].tolist() == COURSE_FUNNEL


def test_next_days_are_on_disk_before_they_take_their_name(
    warehouse: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path.resolve()
    out, staging = folder / "next-day", folder / ".next-day.tmp"
    done = record_moves(monkeypatch)
    write_next_days(out, 1, warehouse_file=warehouse)
    moves = [(move, path) for move, path in done if path.startswith(str(folder))]
    csvs = [str(staging / f"{table}.csv") for table in ("events", "order_items", "orders")]
    assert sorted(moves[:3]) == [("fsync", csv) for csv in csvs]
    assert moves[3:] == [("fsync", str(staging)), ("replace", str(out)), ("fsync", str(folder))]


def test_new_raw_data_is_on_disk_before_it_takes_its_name(
    warehouse: Path, course_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = warehouse.parent.resolve()
    written = folder / f".{store.RAW_FILE}.{os.getpid()}.tmp"
    done = record_moves(monkeypatch)
    fresh_raw(warehouse, course_data=course_data)
    assert [(move, path) for move, path in done if path.startswith(str(folder))] == [
        ("fsync", str(written)),
        ("replace", str(store.raw_path(warehouse).resolve())),
        ("fsync", str(folder)),
    ]
    assert store.raw_counts(warehouse)["events"] == 3553


def _busy(warehouse: Path, pid: int) -> bool:
    """`greenery build` and `greenery export` are refused while the step `pid` runs."""
    for step in ("build", "export"):
        refused = greenery(warehouse, step)
        assert refused.returncode == 1, refused.stdout
        assert f"another greenery publish is running (pid {pid}," in refused.stderr
        assert "Traceback" not in refused.stderr
    return True


def test_killed_export_keeps_the_previous_exports_and_the_next_export_cleans_up(
    warehouse: Path, reader: SemanticLayer, tmp_path: Path
) -> None:
    parquet = tmp_path / "parquet"
    done = greenery(warehouse, "export", "--select", "funnel_overall")
    assert done.returncode == 0, done.stderr
    # what an export killed between building a table aside and swapping it in leaves
    con = duckdb.connect(str(warehouse))
    con.execute("create table exports.funnel_overall__building as select * from exports.funnel_overall")
    con.close()
    exporting = start(warehouse, "export", "--parquet", str(parquet), pause_at=".parquet.tmp")

    kill_when(exporting, lambda: bool(list(parquet.glob(".*.parquet.tmp"))))

    assert temp_leftovers(parquet)
    overall = read_sql(warehouse, "select * from exports.funnel_overall")
    assert overall[FUNNEL].iloc[0].tolist() == COURSE_FUNNEL
    assert_readers_answer(warehouse, reader)
    again = greenery(warehouse, "export", "--parquet", str(parquet))
    assert again.returncode == 0, again.stderr
    assert temp_leftovers(parquet, warehouse.parent) == []
    assert len(list(parquet.glob("*.parquet"))) == len(reader.saved_query_names) == 8  # one export each
    staged = read_sql(
        warehouse, "select table_name from information_schema.tables where table_name like '%__building'"
    )
    assert staged.empty

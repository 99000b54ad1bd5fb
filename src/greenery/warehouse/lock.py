"""One greenery step at a time per warehouse folder.

DuckDB allows one writer per file (and a reader in another process blocks it), so two steps
on the same warehouse — a build and a publish, two loads — would fail half-way with a
``duckdb.IOException``. Every step that writes the warehouse or its raw catalog holds an
exclusive ``fcntl.flock`` on ``greenery.lock`` in the warehouse folder for its whole run. The
functions that do the writing take it, so every caller (the CLI, the orchestrator, tests) is
covered: the raw catalog's writers in `store` (load, generate, the week's products),
`replay`, `build`, `run_exports` and `publish`; the report and the demo, which read or chain
them, at their entry points.

Fail fast, not wait: a second step is refused at once with a message naming the step that
holds the lock and its pid. A build takes minutes; a command that sits silently behind
another looks hung, and a scheduler that gets an error can retry. The kernel releases the
lock when its holder exits in any way (a SIGKILL too), so a lock is never stale; the file
stays (removing a lock file races with the next holder).

Steps write aside and rename (``.raw.duckdb.<pid>.tmp``, ``published/.v<n>.tmp/``,
``.<alias>.parquet.tmp``, the next days' ``.DIR.tmp/``); a step killed mid-run leaves its
temporary files behind, and the next run of that step removes them while holding the lock
(`remove_leftovers`): no other step can be writing them then.
A rename is made only once the disk holds what it names (`move_into_place`: fsync, rename,
fsync the folder; `folder_aside` for a folder of files): the machine going down must not
leave a real name on bytes never written. DuckDB fsyncs its own files at each checkpoint.

Within one process the lock is re-entrant: `greenery demo` holds it while its steps take it
again, and the step named is the outermost.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = "greenery.lock"


class WarehouseBusy(RuntimeError):
    """Another greenery step holds the warehouse's lock."""


_held: set[Path] = set()  # the lock files this process holds


def lock_path(warehouse_file: Path) -> Path:
    return warehouse_file.parent / LOCK_FILE


def remove_leftovers(folder: Path, pattern: str) -> list[Path]:
    """Remove the files and folders in `folder` matching `pattern` (a killed step's temporary
    names); call it only while holding the lock. Returns what was removed."""
    found = sorted(folder.glob(pattern)) if folder.is_dir() else []
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def fsync(path: Path) -> None:
    """Wait until the disk holds `path`: a file's bytes, or a folder's list of names."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_into_place(written: Path, final: Path) -> None:
    """Rename `written` (a file, or a folder whose files are on disk) to `final` once the disk
    holds it, then put the rename itself on disk."""
    fsync(written)
    os.replace(written, final)
    fsync(final.parent)


@contextmanager
def folder_aside(final: Path) -> Iterator[Path]:
    """A new folder ``.<name>.tmp`` beside `final` for the block to fill; when the block ends,
    its files go to disk and it becomes `final` (new, or an empty folder). Removed if the block
    raises; one a killed run left is removed first. Call it only while holding the lock."""
    staging = final.with_name(f".{final.name}.tmp")
    remove_leftovers(final.parent, glob.escape(staging.name))
    staging.mkdir(parents=True)
    try:
        yield staging
        for path in sorted(staging.iterdir()):
            fsync(path)
        move_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the file (may be empty for an instant)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"another greenery {info['step']} is running (pid {info['pid']}, since {info['since']})"
    except (ValueError, KeyError, OSError):
        return "another greenery step is running"


@contextmanager
def exclusive(warehouse_file: Path, step: str) -> Iterator[None]:
    """Hold the warehouse folder's lock for `step` (e.g. "build"); raise WarehouseBusy at once
    when another process holds it."""
    path = lock_path(warehouse_file).resolve()
    if path in _held:  # taken by an outer step of this process
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        message = _holder(fd)
        os.close(fd)
        raise WarehouseBusy(
            f"{message} on {path.parent}: wait for it to finish (or stop it), then run this again"
        ) from None
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"step": step, "pid": os.getpid(), "since": since}).encode(), 0)
        _held.add(path)
        try:
            yield
        finally:
            _held.discard(path)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock

"""Running the venv's `dbt` and `mf` against the project, and where their artifacts land."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from greenery.warehouse import store

TARGET_DIR = store.PROJECT_DIR / "target"
MANIFEST_PATH = TARGET_DIR / "semantic_manifest.json"  # what `dbt parse` writes for MetricFlow
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PROJECT_FLAGS = ("--project-dir", str(store.PROJECT_DIR), "--profiles-dir", str(store.PROJECT_DIR))


class DbtError(RuntimeError):
    """A dbt command failed; the message names the command and what failed."""


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, what makes a child process get SIGKILL when the greenery process that started
    it dies: a killed `greenery build` must not leave its dbt writing to the warehouse after
    the warehouse lock (held by greenery) is released. Runs in the child before exec."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return arm


def run_tool(
    tool: str, args: Sequence[str], *, warehouse_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the venv's `dbt` or `mf` from the repo root against the warehouse; output captured.

    In a child process: dbt-duckdb keeps its DuckDB handles open for the life of the process,
    which would lock the raw catalog against the replay's writes between two snapshots. The
    child dies with this process (`_die_with_parent`).
    """
    return _run_child([str(Path(sys.executable).with_name(tool)), *args], warehouse_file)


def run_dbt_module(
    module: str, args: Sequence[str], *, what: str, warehouse_file: Path | None = None
) -> None:
    """Run `python -m module args`, a program that drives dbt in-process (dbtRunner), in a child
    like `run_tool`; raise DbtError naming `what` on failure."""
    _raise_on_failure(_run_child([sys.executable, "-m", module, *args], warehouse_file), what)


def _run_child(command: list[str], warehouse_file: Path | None) -> subprocess.CompletedProcess[str]:
    settings = store.duckdb_settings(warehouse_file)
    env = {
        **os.environ,
        store.ENV_VAR: str(store.resolve(warehouse_file)),
        store.MEMORY_ENV: settings["memory_limit"],
        store.THREADS_ENV: settings["threads"],
    }
    return subprocess.run(
        command,
        env=env,
        cwd=store.PROJECT_DIR,
        capture_output=True,
        text=True,
        preexec_fn=_die_with_parent(),  # prctl must run in the child, after fork
    )


def run_dbt(args: Sequence[str], *, warehouse_file: Path | None = None) -> None:
    """Run one dbt command against the project and its profiles.yml; raise DbtError on failure."""
    done = run_tool("dbt", ["--quiet", *args, *PROJECT_FLAGS], warehouse_file=warehouse_file)
    _raise_on_failure(done, f"`dbt {' '.join(args)}`")


def _raise_on_failure(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise DbtError(f"{what} failed (exit {done.returncode})\n{output}")

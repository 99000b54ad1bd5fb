"""Running the venv's `dbt` and `mf` against the project, and where their artifacts land."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from greenery.warehouse import store
from greenery.warehouse.lock import move_into_place

DEFAULT_TARGET = "target"  # dbt's own, and where `mf` reads (dbt-metricflow's DEFAULT_TARGET_PATH)
# where dbt writes its artifacts: $DBT_TARGET_PATH (dbt reads it relative to the project) or target/
TARGET_DIR = store.PROJECT_DIR / (os.environ.get("DBT_TARGET_PATH") or DEFAULT_TARGET)
MANIFEST_PATH = TARGET_DIR / "semantic_manifest.json"  # what `dbt parse` writes for MetricFlow
MF_MANIFEST_PATH = store.PROJECT_DIR / DEFAULT_TARGET / MANIFEST_PATH.name  # whatever $DBT_TARGET_PATH says
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
    """Run the venv's `dbt` or `mf` against the warehouse; output captured.

    In a child process: dbt-duckdb keeps its DuckDB handles open for the life of the process,
    which would lock the raw catalog against the replay's writes between two snapshots. The
    child dies with this process (`_die_with_parent`).
    """
    command = [str(Path(sys.executable).with_name(tool)), *args]
    return _run_child(command, warehouse_file, dbt=tool == "dbt")


def run_dbt_module(
    module: str, args: Sequence[str], *, what: str, warehouse_file: Path | None = None
) -> None:
    """Run `python -m module args`, a program that drives dbt in-process (dbtRunner), in a child
    like `run_tool`; raise DbtError naming `what` on failure."""
    _raise_on_failure(_run_child([sys.executable, "-m", module, *args], warehouse_file, dbt=True), what)


def dbt_location(warehouse: Path) -> tuple[Path, Path]:
    """The folder a dbt command runs in, and the warehouse's name from there: its path in the
    project when it lies inside (profiles.yml's default `warehouse/greenery.duckdb`, which a
    plain `dbt build` and the orchestrator's dbt name too), else its file name, from its folder.

    profiles.yml reads the warehouse, its raw catalog and its spill folder from
    $GREENERY_WAREHOUSE, and dbt parses the whole project again whenever the connection it
    reads differs from the last parse's ("Unable to do partial parsing because profile has
    changed": 9.3 s against 3.6 s here). So named, every warehouse called greenery.duckdb reads
    the same, and a dbt command on one keeps the parse of a command on another.
    """
    if warehouse.is_relative_to(store.PROJECT_DIR):
        return store.PROJECT_DIR, warehouse.relative_to(store.PROJECT_DIR)
    return warehouse.parent, Path(warehouse.name)


def dbt_environment(warehouse_file: Path | None = None) -> tuple[Path, dict[str, str]]:
    """The folder a dbt command runs in against the warehouse, and its environment: the
    warehouse as `dbt_location` names it, and the DuckDB settings every connection is held to."""
    warehouse = store.resolve(warehouse_file)
    cwd, name = dbt_location(warehouse)
    cwd.mkdir(parents=True, exist_ok=True)
    return cwd, _environment(warehouse, name)


def _environment(warehouse: Path, name: Path) -> dict[str, str]:
    """This process's environment, with the warehouse called `name` and its DuckDB settings."""
    settings = store.duckdb_settings(warehouse)
    return {
        **os.environ,
        store.ENV_VAR: str(name),
        store.MEMORY_ENV: settings["memory_limit"],
        store.THREADS_ENV: settings["threads"],
    }


def _run_child(
    command: list[str], warehouse_file: Path | None, *, dbt: bool
) -> subprocess.CompletedProcess[str]:
    """Run `command` against the warehouse: dbt as `dbt_environment` says, `mf` from the repo
    root (where it finds the project) with the warehouse's full path and dbt's manifest."""
    if dbt:
        cwd, env = dbt_environment(warehouse_file)
    else:
        _place_manifest_for_mf()
        warehouse = store.resolve(warehouse_file)
        cwd, env = store.PROJECT_DIR, _environment(warehouse, warehouse)
    return subprocess.run(
        command,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=_die_with_parent(),  # prctl must run in the child, after fork
    )


def _place_manifest_for_mf() -> None:
    """When dbt writes its artifacts elsewhere ($DBT_TARGET_PATH), put the semantic manifest it
    wrote where `mf` reads it, whole (a copy renamed into place; the name is this process's)."""
    if MF_MANIFEST_PATH == MANIFEST_PATH or not MANIFEST_PATH.is_file():
        return  # mf reads dbt's own, or says itself that there is none
    MF_MANIFEST_PATH.parent.mkdir(exist_ok=True)
    copy = MF_MANIFEST_PATH.with_name(f".{MF_MANIFEST_PATH.name}.{os.getpid()}")
    shutil.copy(MANIFEST_PATH, copy)
    move_into_place(copy, MF_MANIFEST_PATH)


def exec_dbt() -> None:
    """`greenery-dbt ARGS`: `dbt ARGS` against $GREENERY_WAREHOUSE, run as greenery runs it
    (`dbt_environment`), for whoever starts dbt itself: the orchestrator's dbt resource.

    The project and its profiles.yml are this repo's unless DBT_PROJECT_DIR or
    DBT_PROFILES_DIR (or the flags, given as full paths) say otherwise. Those two and
    DBT_LOG_PATH, when relative, stay relative to where the command was started; dbt resolves
    DBT_TARGET_PATH from the project itself.
    """
    cwd, env = dbt_environment()
    env.setdefault("DBT_PROJECT_DIR", str(store.PROJECT_DIR))
    env.setdefault("DBT_PROFILES_DIR", str(store.PROJECT_DIR))
    for name in ("DBT_PROJECT_DIR", "DBT_PROFILES_DIR", "DBT_LOG_PATH"):
        if env.get(name):
            env[name] = os.path.abspath(env[name])
    os.chdir(cwd)
    dbt = str(Path(sys.executable).with_name("dbt"))
    os.execve(dbt, [dbt, *sys.argv[1:]], env)


def run_dbt(args: Sequence[str], *, warehouse_file: Path | None = None) -> None:
    """Run one dbt command against the project and its profiles.yml; raise DbtError on failure."""
    done = run_tool("dbt", ["--quiet", *args, *PROJECT_FLAGS], warehouse_file=warehouse_file)
    _raise_on_failure(done, f"`dbt {' '.join(args)}`")


def _raise_on_failure(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise DbtError(f"{what} failed (exit {done.returncode})\n{output}")

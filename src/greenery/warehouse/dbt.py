"""Running the venv's `dbt` and `mf` against the project, and where their artifacts land."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from greenery.warehouse import store

TARGET_DIR = store.PROJECT_DIR / "target"
MANIFEST_PATH = TARGET_DIR / "semantic_manifest.json"  # what `dbt parse` writes for MetricFlow


class DbtError(RuntimeError):
    """A dbt command failed; the message names the command and what failed."""


def run_tool(
    tool: str, args: Sequence[str], *, warehouse_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the venv's `dbt` or `mf` from the repo root against the warehouse; output captured.

    In a child process: dbt-duckdb keeps its DuckDB handles open for the life of the process,
    which would lock the raw catalog against the replay's writes between two snapshots.
    """
    settings = store.duckdb_settings(warehouse_file)
    env = {
        **os.environ,
        store.ENV_VAR: str(store.resolve(warehouse_file)),
        store.MEMORY_ENV: settings["memory_limit"],
        store.THREADS_ENV: settings["threads"],
    }
    executable = Path(sys.executable).with_name(tool)
    return subprocess.run(
        [str(executable), *args], env=env, cwd=store.PROJECT_DIR, capture_output=True, text=True
    )


def run_dbt(args: Sequence[str], *, warehouse_file: Path | None = None) -> None:
    """Run one dbt command against the project and its profiles.yml; raise DbtError on failure."""
    flags = ["--project-dir", str(store.PROJECT_DIR), "--profiles-dir", str(store.PROJECT_DIR)]
    done = run_tool("dbt", ["--quiet", *args, *flags], warehouse_file=warehouse_file)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise DbtError(f"`dbt {' '.join(args)}` failed (exit {done.returncode})\n{output}")

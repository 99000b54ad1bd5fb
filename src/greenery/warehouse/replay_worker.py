"""The replay's child process: every week's products, each followed by `dbt snapshot`, in one
dbt process.

A `dbt` command per week paid dbt's start-up (about 3 s) and a project parse each time; here
dbt parses once (`dbtRunner`) and snapshots every week from the same manifest. Between two
weeks dbt-duckdb's DuckDB is closed, so that the week's products can be written to the raw
catalog, which dbt attaches read-only. The parent (`replay`) holds the warehouse lock for
the whole run; this process only ever runs under it.

    python -m greenery.warehouse.replay_worker WEEK [WEEK ...]   (warehouse: $GREENERY_WAREHOUSE)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dbt.adapters.duckdb.connections import DuckDBConnectionManager
from dbt.cli.main import dbtRunner

from greenery.warehouse import store
from greenery.warehouse.dbt import PROJECT_FLAGS
from greenery.warehouse.replay import week_rows, weekly_states


def _close_duckdb() -> None:
    """Close dbt-duckdb's DuckDB (it keeps it open for the life of the process) and forget it."""
    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
    DuckDBConnectionManager.close_all_connections()


def snapshot_weeks(weeks: Sequence[int]) -> None:
    """Write each week's products and snapshot them, in order; SystemExit(1) when dbt fails."""
    states = weekly_states()
    parsed = dbtRunner().invoke(["--quiet", "parse", *PROJECT_FLAGS])
    _close_duckdb()
    if not parsed.success:
        raise SystemExit(1)
    runner = dbtRunner(manifest=parsed.result)
    for week in weeks:
        store.write_products(*week_rows(states, week))
        done = runner.invoke(["--quiet", "snapshot", *PROJECT_FLAGS])
        _close_duckdb()
        if not done.success:
            raise SystemExit(1)


if __name__ == "__main__":
    snapshot_weeks([int(week) for week in sys.argv[1:]])

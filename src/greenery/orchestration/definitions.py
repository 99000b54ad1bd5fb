"""The code location: `dagster dev -m greenery.orchestration.definitions` (`make orchestrate`).

Everything runs in one process per run (the in-process executor): DuckDB allows one writer,
and each run is a chain raw → dbt → exports → publish → dashboard anyway.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dagster import Definitions, in_process_executor
from dagster_dbt import DbtCliResource

from greenery.orchestration.dbt import PROJECT, greenery_dbt
from greenery.orchestration.raw import raw_loader, raw_products
from greenery.orchestration.schedules import (
    daily_build_job,
    daily_build_schedule,
    full_refresh_job,
    raw_freshness_checks,
    raw_freshness_sensor,
    weekly_full_refresh_schedule,
    weekly_snapshot_job,
    weekly_snapshot_schedule,
)
from greenery.orchestration.serving import EXPOSURE_ASSETS, published_warehouse, saved_query_exports

DBT = Path(sys.executable).with_name("greenery-dbt")  # the venv's dbt, run as greenery runs it

defs = Definitions(
    assets=[
        raw_loader,
        raw_products,
        greenery_dbt,
        saved_query_exports,
        published_warehouse,
        *EXPOSURE_ASSETS,
    ],
    asset_checks=raw_freshness_checks,
    jobs=[weekly_snapshot_job, daily_build_job, full_refresh_job],
    schedules=[weekly_snapshot_schedule, daily_build_schedule, weekly_full_refresh_schedule],
    sensors=[raw_freshness_sensor],
    resources={"dbt": DbtCliResource(project_dir=PROJECT, dbt_executable=str(DBT))},
    executor=in_process_executor,
)

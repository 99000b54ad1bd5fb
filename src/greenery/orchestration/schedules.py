"""What runs when: jobs, their schedules, and the raw-data freshness sensor.

- weekly snapshot, Fridays 00:00 UTC (the course's weekly snapshot time): the week's products
  and the products snapshot, at the tick's time. One run per ISO week (the run key), and a
  second run in the same week writes nothing new.
- daily build, 03:00 UTC Monday to Saturday: every dbt model and test (the session facts
  incrementally, their tests and the raw tables' on the rows that arrived in the lookback
  window), the saved-query exports, the published copy and the dashboard's check.
- full refresh, 03:00 UTC on Sundays instead of the daily build, and on demand: the daily
  selection with `dbt build --full-refresh`, which rebuilds the incremental models from
  every row and tests every row (an event later than the lookback is picked up then).
- the raw tables are checked for freshness: loaded within the last day, or the check fails
  (a sensor evaluates the checks every few minutes).
"""

from __future__ import annotations

import warnings
from datetime import timedelta

from dagster import (
    AssetKey,
    AssetSelection,
    RunRequest,
    ScheduleEvaluationContext,
    build_last_update_freshness_checks,
    build_sensor_for_freshness_checks,
    define_asset_job,
    schedule,
)
from dagster_dbt import build_dbt_asset_selection

from greenery.orchestration.dbt import SNAPSHOT_NAME, greenery_dbt
from greenery.orchestration.raw import LOADED_KEYS, PRODUCTS_KEY, WEEKLY_FEED_KEY, raw_products
from greenery.orchestration.serving import EXPORTS_GROUP, SERVING_GROUP

# One writer at a time on the embedded warehouse (DuckDB): every job carries this tag, and
# dagster.yaml limits runs with it to one.
WAREHOUSE_TAG = {"greenery/warehouse": "writer"}
TIMEZONE = "UTC"
WEEKLY_CRON = "0 0 * * 5"
DAILY_CRON = "0 3 * * 1-6"
FULL_REFRESH_CRON = "0 3 * * 0"
RAW_MAX_AGE = timedelta(days=1)

SNAPSHOT_SELECTION = build_dbt_asset_selection([greenery_dbt], dbt_select=SNAPSHOT_NAME)
MODELS_SELECTION = build_dbt_asset_selection(
    [greenery_dbt], dbt_select="resource_type:model", dbt_exclude=None
)
DAILY_SELECTION = MODELS_SELECTION | AssetSelection.groups(EXPORTS_GROUP, SERVING_GROUP)

weekly_snapshot_job = define_asset_job(
    "weekly_snapshot",
    selection=AssetSelection.assets(raw_products) | SNAPSHOT_SELECTION,
    description="The week's products as of the run's time, then the products snapshot (dbt) and its tests.",
    tags=WAREHOUSE_TAG,
)
daily_build_job = define_asset_job(
    "daily_build",
    selection=DAILY_SELECTION,
    description="dbt build of every model (incremental session facts), exports, publish, dashboard check.",
    tags=WAREHOUSE_TAG,
)
full_refresh_job = define_asset_job(
    "full_refresh",
    selection=DAILY_SELECTION,
    description="As the daily build, with `dbt build --full-refresh`: Sundays, and on demand.",
    tags=WAREHOUSE_TAG,
    config={"ops": {"greenery_dbt": {"config": {"full_refresh": True}}}},
)


def iso_week(context: ScheduleEvaluationContext) -> str:
    year, week, _ = context.scheduled_execution_time.isocalendar()
    return f"{year}-W{week:02d}"


def tick_day(context: ScheduleEvaluationContext) -> str:
    """The run key of a build: one run per day, whichever job runs that day."""
    return context.scheduled_execution_time.date().isoformat()


@schedule(cron_schedule=WEEKLY_CRON, job=weekly_snapshot_job, execution_timezone=TIMEZONE)
def weekly_snapshot_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    """One run per ISO week, pinned to the tick's time (the week's products as of then)."""
    as_of = context.scheduled_execution_time.isoformat()
    return RunRequest(
        run_key=iso_week(context),
        run_config={"ops": {raw_products.op.name: {"config": {"as_of": as_of}}}},
        tags={"greenery/week": iso_week(context)},
    )


@schedule(cron_schedule=DAILY_CRON, job=daily_build_job, execution_timezone=TIMEZONE)
def daily_build_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    """One run per day."""
    return RunRequest(run_key=tick_day(context))


@schedule(cron_schedule=FULL_REFRESH_CRON, job=full_refresh_job, execution_timezone=TIMEZONE)
def weekly_full_refresh_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    """One run per week, on the day the daily build does not run."""
    return RunRequest(run_key=tick_day(context))


RAW_KEYS: list[AssetKey] = [*LOADED_KEYS, PRODUCTS_KEY, WEEKLY_FEED_KEY]
with warnings.catch_warnings():  # superseded by FreshnessPolicy, which OSS Dagster does not evaluate yet
    warnings.simplefilter("ignore")
    raw_freshness_checks = build_last_update_freshness_checks(assets=RAW_KEYS, lower_bound_delta=RAW_MAX_AGE)
    raw_freshness_sensor = build_sensor_for_freshness_checks(
        freshness_checks=raw_freshness_checks, name="raw_freshness_sensor", minimum_interval_seconds=300
    )

"""Raw assets: the loader (course CSVs or the generator) and the week's products.

The dbt sources read ``raw.public.<table>``. The loader replaces the whole raw catalog; the
products table is its own asset because it changes on the snapshot's cadence: the weekly run
writes the products as they were at its tick time, together with the replay clock
(``raw.replay.clock``), which is the time the products snapshot records.

On the embedded warehouse the week's products come from the weekly inventory the loader
brings (``raw.replay.product_inventory_by_week``); in production the loader keeps
``raw.public.products`` current and the snapshot records "now".
"""

import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from greenery.data.schema import INVENTORY_BY_WEEK, TABLES
from greenery.warehouse import store
from greenery.warehouse.build import fresh_raw
from greenery.warehouse.replay import last_snapshot_run, week_rows, weekly_states

COURSE_DATA_ENV = "GREENERY_COURSE_DATA"
SCHEDULED_TIME_TAG = "dagster/scheduled_execution_time"
RAW_GROUP = "raw"
PRODUCTS = "products"
# The weekly inventory feed the week's products come from (embedded warehouse only).
WEEKLY_FEED_KEY = AssetKey([store.RAW_CATALOG, store.REPLAY_SCHEMA, INVENTORY_BY_WEEK.name])
PRODUCTS_KEY = AssetKey([store.RAW_CATALOG, store.RAW_SCHEMA, PRODUCTS])


def source_key(table: str) -> AssetKey:
    """The asset key of ``raw.public.<table>``: also what the dbt sources map to."""
    return AssetKey([store.RAW_CATALOG, store.RAW_SCHEMA, table])


LOADED_KEYS = [source_key(t.name) for t in TABLES if t.name != PRODUCTS]


class LoadConfig(Config):
    """Where the raw data comes from: a folder of course CSVs, else the generator."""

    course_data: str = ""  # empty: $GREENERY_COURSE_DATA, else the generator
    scale: int = 1


@multi_asset(
    specs=[
        *(
            AssetSpec(
                key, description=f"raw.public.{key.path[-1]}, as the loader delivers it", kinds={"duckdb"}
            )
            for key in LOADED_KEYS
        ),
        AssetSpec(
            WEEKLY_FEED_KEY,
            description="Each week's product states (week, recorded_at, inventory): the weekly feed.",
            kinds={"duckdb"},
        ),
    ],
    group_name=RAW_GROUP,
    name="raw_loader",
)
def raw_loader(context: AssetExecutionContext, config: LoadConfig):
    """Replace the raw catalog whole: the course export, or generated data of the same shape."""
    folder = config.course_data or os.environ.get(COURSE_DATA_ENV, "")
    counts = fresh_raw(course_data=Path(folder) if folder else None, scale=config.scale)
    source = f"course export {folder}" if folder else f"generator, scale {config.scale}"
    context.log.info(f"raw catalog replaced from the {source}: {counts}")
    load_id = store.raw_load_id() or ""
    for key in [*LOADED_KEYS, WEEKLY_FEED_KEY]:
        yield MaterializeResult(
            asset_key=key,
            metadata={
                "dagster/row_count": counts[key.path[-1]],
                "source": source,
                "load_id": load_id,
                "path": MetadataValue.path(str(store.raw_path())),
            },
        )


class WeekConfig(Config):
    """The time the weekly run stands for; empty: the run's scheduled time, else now (UTC)."""

    as_of: str = ""


def run_time(context: AssetExecutionContext, config: WeekConfig) -> pd.Timestamp:
    """The run's pinned clock: its config, else the schedule tick it came from, else now."""
    text = config.as_of or context.run.tags.get(SCHEDULED_TIME_TAG, "")
    moment = pd.Timestamp(text) if text else pd.Timestamp(datetime.now(UTC))
    return moment.tz_convert(None) if moment.tzinfo else moment


def week_at(states: pd.DataFrame, moment: pd.Timestamp) -> int:
    """The newest week recorded at or before `moment` (a clear error before the first)."""
    weeks = states.loc[states["recorded_at"] <= moment, "week"]
    if weeks.empty:
        first = states["recorded_at"].min()
        raise ValueError(f"no weekly product state at or before {moment} (the first is {first})")
    return int(weeks.max())


@asset(
    key=PRODUCTS_KEY,
    deps=[WEEKLY_FEED_KEY],
    group_name=RAW_GROUP,
    kinds={"duckdb"},
    description="raw.public.products as of the run's time, with the replay clock the snapshot records.",
)
def raw_products(context: AssetExecutionContext, config: WeekConfig) -> MaterializeResult:
    """The week's products as of the run's clock, written with that week's time.

    Idempotent: a second run in the same week writes the same rows and time. A run for a week
    older than the snapshot's last run writes the week the snapshot last saw instead, so the
    snapshot never records the past after the fact.
    """
    moment = run_time(context, config)
    states = weekly_states()
    week = week_at(states, moment)
    rows, recorded_at = week_rows(states, week)
    last = last_snapshot_run()
    if last is not None and recorded_at < last:
        context.log.warning(f"week {week} is older than the snapshot's last run ({last}): keeping that week")
        week = week_at(states, last)
        rows, recorded_at = week_rows(states, week)
    store.replace_products(rows, recorded_at)
    return MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "week": week,
            "as_of": MetadataValue.timestamp(moment.tz_localize(UTC)),
            "replay_clock": str(recorded_at),
            "units_in_stock": int(rows["inventory"].sum()),
        }
    )

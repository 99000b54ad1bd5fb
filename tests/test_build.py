"""`greenery build` and the replay clock: after a replay, no build records a version dated today.

Runs the real CLI on a copy of the course warehouse (weeks 1–4 replayed, built).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import oracle
import pandas as pd
import pytest

from conftest import read_sql
from greenery.cli import main
from greenery.warehouse import store
from greenery.warehouse.build import copy_warehouse
from greenery.warehouse.dbt import TARGET_DIR, run_dbt

SNAPSHOT = "select * from snapshots.products_snapshot order by product_id, dbt_valid_from"


@pytest.fixture
def copied(course_warehouse: Path, warehouse_file: Path) -> Path:
    """The course warehouse and its raw catalog copied to this test's $GREENERY_WAREHOUSE."""
    return copy_warehouse(course_warehouse, warehouse_file)


def _raw_products(warehouse_file: Path) -> list[tuple[str, int]]:
    rows = read_sql(
        store.raw_path(warehouse_file), "select product_id, inventory from public.products order by 1"
    )
    return list(rows.itertuples(index=False, name=None))


def _week_state(warehouse_file: Path, week: int) -> tuple[list[tuple[str, int]], pd.Timestamp]:
    weekly = oracle.raw_frames(warehouse_file)["product_inventory_by_week"]
    rows = weekly[weekly["week"] == week].sort_values("product_id")
    return list(zip(rows["product_id"], rows["inventory"].astype(int), strict=True)), rows[
        "recorded_at"
    ].iloc[0]


def _assert_versions_only_at_replayed_weeks(warehouse_file: Path) -> None:
    raw = oracle.raw_frames(warehouse_file)
    week_times = set(raw["product_inventory_by_week"]["recorded_at"])
    snapshot = read_sql(warehouse_file, SNAPSHOT)
    assert set(snapshot["dbt_valid_from"]) <= week_times
    assert set(snapshot["dbt_valid_to"].dropna()) <= week_times
    # one version for week 1, then one per change: what four weekly snapshots write
    changes = oracle.inventory_changes(raw).groupby("product_name").size()
    per_product = snapshot.groupby("name").size()
    assert per_product.to_dict() == {p: 1 + changes.get(p, 0) for p in per_product.index}
    last_run = read_sql(warehouse_file, "select max(snapshot_at) as at from snapshots.snapshot_runs").at[
        0, "at"
    ]
    assert last_run == max(week_times)


def test_greenery_build_twice_and_plain_dbt_build_add_no_version(
    copied: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = read_sql(copied, SNAPSHOT)
    assert main(["build"]) == 0
    assert main(["build"]) == 0
    assert "built " in capsys.readouterr().out
    run_dbt(["build"], warehouse_file=copied)  # what a user may type instead: just as safe
    pd.testing.assert_frame_equal(read_sql(copied, SNAPSHOT), before)
    _assert_versions_only_at_replayed_weeks(copied)
    last_day = read_sql(copied, "select max(inventory_date) as d from marts.fct_product_inventory_daily")
    assert last_day.at[0, "d"] == pd.Timestamp(store.replay_clock(copied)).normalize()


def test_load_then_replay_leaves_raw_products_at_the_last_week(copied: Path, course_data: Path) -> None:
    before = read_sql(copied, SNAPSHOT)
    assert main(["load", "--from-csv", str(course_data)]) == 0
    week_4, week_4_at = _week_state(copied, 4)
    assert _raw_products(copied) != week_4  # the reload put products.csv back
    assert store.replay_clock(copied) is None
    assert main(["replay", "--weeks", "1-4"]) == 0  # every week already in the snapshot
    assert _raw_products(copied) == week_4
    assert store.replay_clock(copied) == week_4_at
    assert main(["build"]) == 0
    pd.testing.assert_frame_equal(read_sql(copied, SNAPSHOT), before)
    _assert_versions_only_at_replayed_weeks(copied)


def test_replay_of_earlier_weeks_keeps_raw_at_the_newest_week_seen(copied: Path) -> None:
    week_4, week_4_at = _week_state(copied, 4)
    assert main(["replay", "--weeks", "1-2"]) == 0
    assert _raw_products(copied) == week_4  # going back would make the next build write a version
    assert store.replay_clock(copied) == week_4_at


def _parsed_files() -> int:
    """How many project files the last dbt command parsed (0: it kept the previous parse)."""
    return json.loads((TARGET_DIR / "perf_info.json").read_text())["parsed_path_count"]


def test_dbt_on_another_warehouse_keeps_the_last_parse(tmp_path: Path) -> None:
    first, second = (tmp_path / name / "greenery.duckdb" for name in ("first", "second"))
    run_dbt(["parse"], warehouse_file=first)
    run_dbt(["parse"], warehouse_file=second)
    assert _parsed_files() == 0
    settings = store.duckdb_settings()
    plain = {name: value for name, value in os.environ.items() if name != store.ENV_VAR}
    plain |= {store.MEMORY_ENV: settings["memory_limit"], store.THREADS_ENV: settings["threads"]}
    # greenery-dbt (the orchestrator's dbt), started anywhere, runs dbt as greenery does
    started_elsewhere = {**plain, store.ENV_VAR: str(first), "DBT_LOG_PATH": "logs"}
    greenery_dbt = Path(sys.executable).with_name("greenery-dbt")
    subprocess.run([greenery_dbt, "--quiet", "parse"], env=started_elsewhere, cwd=tmp_path, check=True)
    assert _parsed_files() == 0
    assert (tmp_path / "logs" / "dbt.log").is_file()
    # the repo's own warehouse is named as a plain `dbt parse` from the repo root names it
    run_dbt(["parse"], warehouse_file=store.DEFAULT_PATH)
    dbt = Path(sys.executable).with_name("dbt")
    subprocess.run([dbt, "--quiet", "parse"], env=plain, cwd=store.PROJECT_DIR, check=True)
    assert _parsed_files() == 0

"""The Dagster code location (greenery.orchestration) run in-process on the course data.

One warehouse for the module: the loader, then the weekly schedule's runs for the four
course weeks (and the last one again), then every asset materialized in one run. A copy of
that warehouse with a bad raw row shows a failing dbt test failing its asset check.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import oracle
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    ExecuteInProcessResult,
    RunRequest,
    build_schedule_context,
    materialize,
)

from conftest import as_built_before_irregular_page_url, read_sql
from greenery.orchestration.dbt import KEEP_RUN_FOLDERS
from greenery.orchestration.definitions import defs
from greenery.orchestration.raw import PRODUCTS_KEY, raw_loader, raw_products
from greenery.orchestration.schedules import (
    DAILY_CRON,
    FULL_REFRESH_CRON,
    WEEKLY_CRON,
    daily_build_schedule,
    weekly_full_refresh_schedule,
    weekly_snapshot_schedule,
)
from greenery.warehouse import store
from greenery.warehouse.build import copy_warehouse
from greenery.warehouse.dbt import TARGET_DIR, run_dbt

# The course's weekly snapshots ran on Fridays at midnight: week 1 on 2021-02-12.
WEEK_TICKS = [datetime(2021, 2, 12, tzinfo=UTC) + timedelta(weeks=w) for w in range(4)]
SNAPSHOT_KEY = AssetKey(["snapshots", "products_snapshot"])
FUNNEL_KEY = AssetKey(["exports", "funnel_overall"])


@dataclass
class Orchestrated:
    warehouse_file: Path
    instance: DagsterInstance
    weekly: list[tuple[RunRequest, ExecuteInProcessResult]]
    everything: ExecuteInProcessResult


def _metadata(result: ExecuteInProcessResult, key: AssetKey) -> dict[str, object]:
    (event,) = [m for m in result.get_asset_materialization_events() if m.asset_key == key]
    return {name: value.value for name, value in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def orchestrated(course_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrated]:
    warehouse_file = tmp_path_factory.mktemp("orchestrated") / "warehouse" / "greenery.duckdb"
    with pytest.MonkeyPatch.context() as env, DagsterInstance.ephemeral() as instance:
        env.setenv(store.ENV_VAR, str(warehouse_file))
        env.setenv("GREENERY_COURSE_DATA", str(course_data))
        run_dbt(["parse"])  # the parse every dbt run below starts from (dagster-dbt copies target/'s)
        assert materialize([raw_loader], instance=instance).success
        weekly_job = defs.resolve_job_def("weekly_snapshot")
        weekly = []
        for tick in [*WEEK_TICKS, WEEK_TICKS[-1]]:  # the last week twice: nothing new the second time
            request = weekly_snapshot_schedule(
                build_schedule_context(instance, scheduled_execution_time=tick)
            )
            result = weekly_job.execute_in_process(
                run_config=request.run_config, tags=request.tags, instance=instance
            )
            assert result.success
            weekly.append((request, result))
        everything = defs.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
        yield Orchestrated(warehouse_file, instance, weekly, everything)


def test_the_graph_runs_from_raw_tables_to_the_dashboard() -> None:
    graph = defs.resolve_asset_graph()
    dashboard = AssetKey("product_funnel_dashboard")
    upstream, pending = set(), [dashboard]
    while pending:
        parents = graph.get(pending.pop()).parent_keys - upstream
        upstream |= parents
        pending.extend(parents)
    groups = {graph.get(k).group_name for k in upstream}
    assert groups == {
        "raw",
        "staging",
        "snapshots",
        "intermediate",
        "marts",
        "utilities",
        "semantic_layer",
        "serving",
    }
    raw = {k for k in graph.get_all_asset_keys() if k.path[0] == "raw"}
    assert len(raw) == 8  # the seven course tables and the weekly inventory feed
    assert raw <= upstream
    # promos only through fct_orders, whose orders with items make dim_users' buyers
    promos = AssetKey(["staging", "stg_greenery__promos"])
    assert {k for k in upstream if promos in graph.get(k).parent_keys} == {AssetKey(["marts", "fct_orders"])}
    assert AssetKey(["marts", "fct_orders"]) in graph.get(AssetKey(["marts", "dim_users"])).parent_keys
    assert AssetKey("published_warehouse") in graph.get(dashboard).parent_keys


def test_every_asset_materialized_on_the_course_data(orchestrated: Orchestrated) -> None:
    result = orchestrated.everything
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == set(defs.resolve_asset_graph().get_all_asset_keys())
    funnel = read_sql(orchestrated.warehouse_file, "select * from exports.funnel_overall")
    steps = funnel[["sessions_with_page_view", "sessions_with_add_to_cart", "sessions_with_checkout"]]
    assert steps.iloc[0].tolist() == [578, 467, 361]
    assert _metadata(result, FUNNEL_KEY)["dagster/row_count"] == 1
    dashboard = _metadata(result, AssetKey("product_funnel_dashboard"))["rows_by_saved_query"]
    assert dashboard["funnel_overall"] == 1 and len(dashboard) == 8  # every saved query the exposure lists


def test_run_metadata_answers_what_ran_and_how_long(orchestrated: Orchestrated) -> None:
    sessions = _metadata(orchestrated.everything, AssetKey(["marts", "fct_sessions"]))
    assert sessions["dbt/status"] == "success"
    assert sessions["dbt/execution_time_s"] > 0
    assert (
        sessions["dagster/row_count"]
        == read_sql(orchestrated.warehouse_file, "select count(*) as n from marts.fct_sessions").n[0]
    )
    assert Path(str(sessions["dbt/run_results"])).is_file()
    assert sessions["dbt/full_refresh"] is True  # the loader replaced the raw data since the last build


def test_the_orchestrators_dbt_keeps_greenerys_parse(orchestrated: Orchestrated) -> None:
    """It runs greenery-dbt, which names the warehouse as greenery's own dbt runs do: dbt does
    not parse the project again for a profile that changed (9.3 s against 3.6 s here)."""
    weekly_runs = [result for _, result in orchestrated.weekly]
    for result in [*weekly_runs, orchestrated.everything]:
        (run_results,) = {
            str(event.materialization.metadata["dbt/run_results"].value)
            for event in result.get_asset_materialization_events()
            if "dbt/run_results" in event.materialization.metadata
        }
        log = (Path(run_results).parent / "dbt.log").read_text()  # DBT_LOG_PATH: the run's target
        assert "Partial parsing enabled" in log
        assert "Unable to do partial parsing" not in log


def test_every_asset_check_passes(orchestrated: Orchestrated) -> None:
    evaluations = orchestrated.everything.get_asset_check_evaluations()
    expected = set(defs.resolve_asset_graph().asset_check_keys)
    assert {e.asset_check_key for e in evaluations} == expected
    failed = [e.asset_check_key.to_user_string() for e in evaluations if not e.passed]
    assert failed == []
    assert len(expected) > 100  # the dbt tests (sources' included) and the raw freshness checks


def test_four_weekly_runs_snapshot_each_week_once(orchestrated: Orchestrated) -> None:
    raw = oracle.raw_frames(orchestrated.warehouse_file)
    changes = oracle.inventory_changes(raw)
    per_product = read_sql(
        orchestrated.warehouse_file,
        "select name, count(*) as versions from snapshots.products_snapshot group by name",
    ).set_index("name")["versions"]
    changed = changes.groupby("product_name").size()
    assert per_product.to_dict() == {p: 1 + changed.get(p, 0) for p in per_product.index}
    every_week = sorted(p for p, n in changed.items() if n == 3)
    assert every_week == ["Monstera", "Philodendron", "Pothos", "String of pearls"]
    assert all(per_product[p] == 4 for p in every_week)

    written = [
        _metadata(result, SNAPSHOT_KEY)["snapshot/versions_written"] for _, result in orchestrated.weekly
    ]
    products = raw["products"]["product_id"].nunique()
    by_week = changes.groupby("week").size()
    assert written == [products, by_week.get(2, 0), by_week.get(3, 0), by_week.get(4, 0), 0]
    weeks = [_metadata(result, PRODUCTS_KEY)["week"] for _, result in orchestrated.weekly]
    assert weeks == [1, 2, 3, 4, 4]
    # the run after the weekly ones (everything, at today's time) adds no version either
    assert _metadata(orchestrated.everything, SNAPSHOT_KEY)["snapshot/versions_written"] == 0


def _copy(orchestrated: Orchestrated, tmp_path: Path) -> Path:
    """The orchestrated warehouse, its raw catalog and the raw load it was built from, copied."""
    return copy_warehouse(
        orchestrated.warehouse_file,
        tmp_path / "warehouse" / orchestrated.warehouse_file.name,
        built_from=True,
    )


def _materialize(warehouse_file: Path, asset: AssetKey) -> ExecuteInProcessResult:
    """One asset materialized on `warehouse_file` in a fresh instance; a failure is returned, not raised."""
    with pytest.MonkeyPatch.context() as env, DagsterInstance.ephemeral() as instance:
        env.setenv(store.ENV_VAR, str(warehouse_file))
        return defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[asset], raise_on_error=False
        )


def test_a_failing_dbt_test_fails_its_asset_check(orchestrated: Orchestrated, tmp_path: Path) -> None:
    warehouse_file = _copy(orchestrated, tmp_path)
    with duckdb.connect(str(store.raw_path(warehouse_file))) as raw:
        raw.execute(
            "insert into public.promos select * from public.promos order by promo_id limit 1"
        )  # a repeated key
    promos = AssetKey(["staging", "stg_greenery__promos"])
    result = _materialize(warehouse_file, promos)
    assert not result.success
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    # the source's own test fails its check on raw/public/promos, and blocks the staging view
    assert checks["source_unique_greenery_promos_promo_id"] is False
    assert checks["source_not_null_greenery_promos_promo_id"] is True
    assert promos not in {e.asset_key for e in result.get_asset_materialization_events()}


def test_a_model_whose_columns_changed_fails_saying_how_to_rebuild(
    orchestrated: Orchestrated, tmp_path: Path
) -> None:
    """A warehouse built before the project changed an incremental model's columns (as when
    stg_greenery__event_rows stored every page_url): the run fails and says which config rebuilds."""
    warehouse_file = _copy(orchestrated, tmp_path)
    as_built_before_irregular_page_url(warehouse_file)
    result = _materialize(warehouse_file, AssetKey(["staging", "stg_greenery__event_rows"]))
    assert not result.success
    (failure,) = result.get_step_failure_events()
    description = failure.step_failure_data.user_failure_data.description
    assert "stg_greenery__event_rows" in description
    assert "config says `full_refresh: true`" in description


def test_a_run_leaves_the_newest_dbt_run_folders(
    orchestrated: Orchestrated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dagster-dbt gives each run's dbt a target folder of its own (greenery_dbt-<run>-<id>):
    after a run, the newest KEEP_RUN_FOLDERS are left, and other folders are not touched."""
    target = tmp_path / "target"
    earlier = []
    for n in range(KEEP_RUN_FOLDERS):  # earlier runs' folders, oldest first
        folder = target / f"greenery_dbt-{n:07d}-0000000"
        folder.mkdir(parents=True)
        (folder / "run_results.json").write_text("{}")
        os.utime(folder, (1_000_000_000 + n, 1_000_000_000 + n))
        earlier.append(folder)
    other = target / "snowflake-check"
    other.mkdir()
    os.utime(other, (1_000_000_000, 1_000_000_000))
    shutil.copy(TARGET_DIR / "partial_parse.msgpack", target)  # dagster-dbt starts from its parse
    monkeypatch.setenv("DBT_TARGET_PATH", str(target))
    result = _materialize(_copy(orchestrated, tmp_path), AssetKey(["staging", "stg_greenery__promos"]))
    assert result.success
    left = set(target.glob("greenery_dbt-*"))
    (this_run,) = left - set(earlier)
    assert (this_run / "run_results.json").is_file()
    assert left == {this_run, *earlier[1:]}
    assert other.is_dir()


def test_schedules_run_what_and_when() -> None:
    assert weekly_snapshot_schedule.cron_schedule == WEEKLY_CRON == "0 0 * * 5"
    assert daily_build_schedule.cron_schedule == DAILY_CRON == "0 3 * * 1-6"
    # Sundays the daily build's time runs the full refresh: every row rebuilt and tested
    assert weekly_full_refresh_schedule.cron_schedule == FULL_REFRESH_CRON == "0 3 * * 0"
    assert weekly_full_refresh_schedule.job_name == "full_refresh"
    schedules = (weekly_snapshot_schedule, daily_build_schedule, weekly_full_refresh_schedule)
    assert {s.execution_timezone for s in schedules} == {"UTC"}
    weekly = defs.resolve_job_def(weekly_snapshot_schedule.job_name).asset_layer.executable_asset_keys
    assert weekly == {PRODUCTS_KEY, SNAPSHOT_KEY}
    daily = defs.resolve_job_def(daily_build_schedule.job_name).asset_layer.executable_asset_keys
    assert SNAPSHOT_KEY not in daily and PRODUCTS_KEY not in daily
    assert {AssetKey(["marts", "fct_sessions"]), FUNNEL_KEY, AssetKey("published_warehouse")} <= daily
    assert AssetKey("product_funnel_dashboard") in daily
    assert not any(k.path[0] == "raw" for k in daily)
    full = defs.resolve_job_def("full_refresh")
    assert full.asset_layer.executable_asset_keys == daily
    # twice in a week: one run key, the same pinned time
    friday, sunday = WEEK_TICKS[1], WEEK_TICKS[1] + timedelta(days=2)
    with DagsterInstance.ephemeral() as instance:
        first = weekly_snapshot_schedule(build_schedule_context(instance, scheduled_execution_time=friday))
        again = weekly_snapshot_schedule(build_schedule_context(instance, scheduled_execution_time=sunday))
    assert first.run_key == again.run_key == "2021-W07"
    assert first.run_config["ops"][raw_products.op.name]["config"]["as_of"] == friday.isoformat()

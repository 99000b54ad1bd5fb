"""Every model, snapshot and test compiled for Snowflake is SQL Snowflake accepts.

And DuckDB-only SQL is caught twice: by the dialect check of the compiled project and by the
emulated Snowflake run, shown on a deliberately broken copy of the project.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from metricflow.engine.metricflow_engine import MetricFlowEngine, MetricFlowQueryRequest
from metricflow.protocols.sql_client import SqlEngine
from metricflow.sql.render.snowflake import SnowflakeSqlPlanRenderer
from metricflow_semantics.model.dbt_manifest_parser import parse_manifest_from_dbt_generated_manifest
from metricflow_semantics.model.semantic_manifest_lookup import SemanticManifestLookup

from greenery.snowflake.dialect import check_sql
from greenery.snowflake.emulation import (
    EmulationError,
    compile_and_check,
    connect,
    create_databases,
    emulated_snowflake,
    run_dbt,
)
from greenery.warehouse.dbt import MANIFEST_PATH
from greenery.warehouse.store import PROJECT_DIR

BROKEN_MODEL = "broken_duckdb_only"
DUCKDB_ONLY_SQL = """
select
    epoch_ms(0) as epoch_start,
    strftime(current_date, '%Y') as year_text
"""
PATH_KEYS = ("model-paths", "snapshot-paths", "test-paths", "macro-paths", "seed-paths", "analysis-paths")


def test_project_compiles_to_snowflake_sql(tmp_path: Path) -> None:
    checked, problems = compile_and_check(PROJECT_DIR, tmp_path)
    assert problems == []
    assert checked >= 50  # every model, snapshot test and data test


@pytest.mark.parametrize(
    ("sql", "reported"),
    [
        ("select list_value(1, 2)", "unknown function LIST_VALUE"),
        ("select epoch_ms(0)", "unknown function EPOCH_MS"),
        ("select strftime(current_date, '%Y')", "unknown function STRFTIME"),
        ("select string_agg(name, ',') from t", "unknown function STRING_AGG"),
        ("select cast(x as hugeint) from t", "data type INT128 does not exist"),
        ("select from where", "not valid Snowflake SQL"),
    ],
)
def test_check_sql_reports_what_snowflake_rejects(sql: str, reported: str) -> None:
    problems = check_sql(sql, "q.sql")
    assert len(problems) == 1
    assert problems[0].startswith("q.sql: ")
    assert reported in problems[0]


def test_check_sql_accepts_snowflake_sql() -> None:
    sql = """
        select
            to_timestamp_ntz('2021-02-12 00:00:00') as recorded_at,
            count_if(has_checkout) as checkouts,
            iff(count(*) > 0, 1, 0) as any_rows,
            hash(session_id) as h,
            listagg(product_id, ',') within group (order by product_id) as products,
            lpad(cast(zipcode as varchar), 5, '0') as zip,
            stddev_samp(inventory) as sd,
            date_trunc('week', event_at) as week,
            datediff(hour, ordered_at, delivered_at) as hours,
            cast(price as numeric(12, 2)) as price,
            price::double precision as price_float
        from t;
        show terse objects in schema analytics.marts
    """
    assert check_sql(sql, "ok.sql") == []


def _copy_dbt_project(destination: Path) -> Path:
    """The dbt project's own files (dbt_project.yml, profiles.yml and the paths it names)."""
    config = yaml.safe_load((PROJECT_DIR / "dbt_project.yml").read_text())
    folders = {folder for key in PATH_KEYS for folder in config.get(key, [])}
    destination.mkdir()
    for name in ("dbt_project.yml", "profiles.yml", "packages.yml"):
        if (PROJECT_DIR / name).is_file():
            shutil.copy2(PROJECT_DIR / name, destination / name)
    for folder in folders:
        if (PROJECT_DIR / folder).is_dir():
            shutil.copytree(PROJECT_DIR / folder, destination / folder)
    return destination


def test_duckdb_only_function_fails_the_dialect_check_and_the_emulated_run(tmp_path: Path) -> None:
    project = _copy_dbt_project(tmp_path / "project")
    (project / "models" / f"{BROKEN_MODEL}.sql").write_text(DUCKDB_ONLY_SQL)

    # 1. the dialect check names the file and each function
    _, problems = compile_and_check(project, tmp_path / "compile")
    compiled = f"compiled/greenery/models/{BROKEN_MODEL}.sql"
    assert problems == [
        f"{compiled}: unknown function {name} (Snowflake has no such function)"
        for name in ("EPOCH_MS", "STRFTIME")
    ]

    # 2. the emulated Snowflake refuses the model, as Snowflake would ...
    with emulated_snowflake(), pytest.raises(EmulationError) as failure:
        _run_model(project, tmp_path / "strict", BROKEN_MODEL)
    message = str(failure.value)
    assert f"model.greenery.{BROKEN_MODEL}" in message
    assert "SQL compilation error" in message
    assert "unknown function EPOCH_MS" in message

    # ... which fakesnow alone would not: it runs on DuckDB, where these functions exist
    with emulated_snowflake(strict=False):
        _run_model(project, tmp_path / "lenient", BROKEN_MODEL)


def _run_model(project: Path, work_dir: Path, model: str) -> None:
    create_databases(connect())
    run_dbt(["run", "--select", model], project_dir=project, work_dir=work_dir)


class _SnowflakeRenderer:
    """A SqlClient that only renders: MetricFlow writes Snowflake SQL without a connection."""

    sql_engine_type = SqlEngine.SNOWFLAKE
    sql_plan_renderer = SnowflakeSqlPlanRenderer()


def test_metricflow_sql_for_every_saved_query_is_valid_snowflake(course_warehouse: Path) -> None:
    manifest = MANIFEST_PATH.read_text()
    lookup = SemanticManifestLookup(parse_manifest_from_dbt_generated_manifest(manifest))
    engine = MetricFlowEngine(semantic_manifest_lookup=lookup, sql_client=_SnowflakeRenderer())  # type: ignore[arg-type]
    names = [q.name for q in lookup.semantic_manifest.saved_queries]
    assert len(names) == 8
    for name in names:
        request = MetricFlowQueryRequest.create(saved_query_name=name)
        sql = engine.explain(request).sql_statement.without_descriptions.sql
        assert check_sql(sql, f"saved query {name}") == [], sql

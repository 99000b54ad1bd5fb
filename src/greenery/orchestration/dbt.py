"""The dbt project as assets: every model, the products snapshot and the time spines, from
the manifest; dbt tests (sources' too) as asset checks.

One `dbt build` per run (dagster-dbt selects what the run asks for). Each materialization
carries what dbt's ``run_results.json`` says of its node (status, timing, adapter response),
the table's row count, and for the snapshot the number of versions the run wrote.
"""

import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetSpec,
    Config,
    Failure,
    MetadataValue,
    Output,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from greenery.orchestration.manifest import MANIFEST_PATH, load_manifest
from greenery.warehouse import store
from greenery.warehouse.build import dbt_build, with_rebuild_hint
from greenery.warehouse.dbt import TARGET_DIR
from greenery.warehouse.replay import SNAPSHOT_RELATION

SNAPSHOT_NAME = SNAPSHOT_RELATION.split(".")[1]
SNAPSHOT_GROUP = "snapshots"
# dagster-dbt gives each run's dbt a target folder of its own (artifacts and dbt.log: 12 MB for
# a daily build of the course data); the newest are kept, the older removed after each run
KEEP_RUN_FOLDERS = 10
DbtEvent = Output | AssetMaterialization | AssetCheckResult | AssetObservation


class GreeneryTranslator(DagsterDbtTranslator):
    """Sources keyed by their relation (``raw/public/<table>``); groups by project folder."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        kind = props["resource_type"]
        if kind == "source":
            key = AssetKey([props["database"], props["schema"], props["name"]])
            return spec.replace_attributes(key=key, group_name="raw")
        if kind == "snapshot":
            return spec.replace_attributes(group_name=SNAPSHOT_GROUP)
        return spec.replace_attributes(group_name=props["fqn"][1])  # staging, intermediate, marts, utilities


TRANSLATOR = GreeneryTranslator(settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True))
PROJECT = DbtProject(project_dir=store.PROJECT_DIR, profiles_dir=store.PROJECT_DIR, target_path=TARGET_DIR)
MANIFEST = load_manifest()  # `dbt parse` first when the manifest is stale
# The incremental models: a build that selects them tracks which raw load they were built from.
INCREMENTAL_KEYS = frozenset(
    TRANSLATOR.get_asset_spec(MANIFEST, unique_id, PROJECT).key
    for unique_id, node in MANIFEST["nodes"].items()
    if node["resource_type"] == "model" and node["config"]["materialized"] == "incremental"
)


class BuildConfig(Config):
    """`dbt build` options: a full refresh rebuilds the incremental session facts from every event."""

    full_refresh: bool = False
    lookback_days: float | None = None


def snapshot_versions() -> int | None:
    """Rows (versions) in the products snapshot; None before it exists."""
    if not store.resolve().is_file():
        return None
    con = store.connect(read_only=True)
    try:
        if not store.table_exists(con, SNAPSHOT_RELATION):
            return None
        return con.execute(f"select count(*) from {SNAPSHOT_RELATION}").fetchone()[0]
    finally:
        con.close()


def table_rows(relations: Mapping[str, str]) -> dict[str, int]:
    """Row counts of built tables, by dbt unique id (views are left out: counting one reruns it)."""
    con = store.connect(read_only=True)
    try:
        counts = {}
        for unique_id, relation in relations.items():
            schema, name = relation.split(".")
            if store.table_exists(con, relation):
                counts[unique_id] = con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0]
        return counts
    finally:
        con.close()


def _built_tables(manifest: Mapping[str, Any], unique_ids: list[str]) -> dict[str, str]:
    relations = {}
    for unique_id in unique_ids:
        node = manifest["nodes"].get(unique_id, {})
        if node.get("resource_type") in ("model", "snapshot") and node["config"]["materialized"] != "view":
            relations[unique_id] = f"{node['schema']}.{node.get('alias') or node['name']}"
    return relations


def remove_old_run_folders(current: Path) -> None:
    """Remove the target folders of this asset's earlier dbt runs beside `current` (dagster-dbt
    names them `<op>-<run id>-<random>`) but the newest KEEP_RUN_FOLDERS, `current` among them.
    Their runs' `dbt/run_results` metadata then names a folder that is gone. Runs that write
    the warehouse run one at a time (`dagster.yaml`), so no other run is writing to one of
    them."""
    op = current.name.split("-", 1)[0]
    runs = sorted(
        (path for path in current.parent.glob(f"{op}-*") if path.is_dir()),
        key=lambda path: (path.stat().st_mtime, path == current),
    )
    for path in runs[:-KEEP_RUN_FOLDERS]:
        shutil.rmtree(path, ignore_errors=True)


def _node_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """What run_results.json says of one node, for its materialization."""
    timing = {t["name"]: t for t in result.get("timing", [])}
    executed = timing.get("execute", {})
    return {
        "dbt/status": result["status"],
        "dbt/execution_time_s": round(result["execution_time"], 3),
        "dbt/started_at": executed.get("started_at", ""),
        "dbt/completed_at": executed.get("completed_at", ""),
        "dbt/adapter_response": MetadataValue.json(result.get("adapter_response") or {}),
        "dbt/message": result.get("message") or "",
    }


@dbt_assets(manifest=MANIFEST_PATH, project=PROJECT, dagster_dbt_translator=TRANSLATOR, name="greenery_dbt")
def greenery_dbt(
    context: AssetExecutionContext, dbt: DbtCliResource, config: BuildConfig
) -> Iterator[DbtEvent]:
    """`dbt build` of what the run selects: models, the snapshot, their tests.

    Around it, what `greenery build` does (`dbt_build`): the warehouse lock, the full-refresh
    rule of the incremental models, and the build marker that keeps a failed build unpublished.
    """
    incremental = bool(INCREMENTAL_KEYS & context.selected_asset_keys)
    with dbt_build(
        full_refresh=config.full_refresh, lookback_days=config.lookback_days, incremental=incremental
    ) as plan:
        yield from _run_dbt_build(context, dbt, plan.args, plan.full_refresh)


def _run_dbt_build(
    context: AssetExecutionContext, dbt: DbtCliResource, args: list[str], full_refresh: bool
) -> Iterator[DbtEvent]:
    """Run `dbt build` with `args`; its events, with run metadata; Failure when a node failed."""
    versions_before = snapshot_versions() or 0
    started = time.perf_counter()
    invocation = dbt.cli(args, context=context, raise_on_error=False)
    events = list(invocation.stream())  # dbt-duckdb is done with the warehouse when this returns
    seconds = time.perf_counter() - started
    run_results = invocation.get_artifact("run_results.json")
    results = {r["unique_id"]: r for r in run_results["results"]}
    manifest = invocation.manifest
    remove_old_run_folders(invocation.target_path)
    rows = table_rows(_built_tables(manifest, list(results)))
    versions_after = snapshot_versions() or 0
    statuses = [r["status"] for r in results.values()]
    summary = {
        "dbt/command": "dbt " + " ".join(args),
        "dbt/full_refresh": full_refresh,
        "dbt/elapsed_s": round(run_results.get("elapsed_time", seconds), 2),
        "dbt/run_results": MetadataValue.path(str(invocation.target_path / "run_results.json")),
        "dbt/nodes": MetadataValue.json({s: statuses.count(s) for s in sorted(set(statuses))}),
    }
    for event in events:
        if isinstance(event, Output):
            unique_id = event.metadata["unique_id"].value
            extra: dict[str, Any] = {
                **summary,
                **_node_result(results.get(unique_id, {"status": "?", "execution_time": 0})),
            }
            if unique_id in rows:
                extra["dagster/row_count"] = rows[unique_id]
            if manifest["nodes"][unique_id]["resource_type"] == "snapshot":
                extra["snapshot/versions_written"] = versions_after - versions_before
                extra["snapshot/versions_total"] = versions_after
                extra["snapshot/recorded_at"] = str(store.replay_clock() or "now")
            event = event.with_metadata({**event.metadata, **extra})
        yield event
    if not invocation.is_successful():
        failed = [
            f"{uid}: {r.get('message') or r['status']}"
            for uid, r in results.items()
            if r["status"] in ("error", "fail")
        ]
        description = f"`dbt {' '.join(args)}` failed: " + "; ".join(failed)
        rebuild = "a run whose greenery_dbt config says `full_refresh: true`"
        raise Failure(description=with_rebuild_hint(description, rebuild), metadata=summary)

"""Downstream of dbt: one asset per saved-query export, the published reader copy, and the
exposures (the dashboard) that read it.

Exports run in the project's own process with one warm MetricFlow engine (dbt Core does not
run exports); the published copy is what readers open; the dashboard's asset asks the
published copy every saved query the dashboard reads, as the dashboard will.
"""

from collections.abc import Iterator

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from greenery.orchestration.dbt import MANIFEST, PROJECT, TRANSLATOR
from greenery.orchestration.manifest import Export, Exposure, exports, exposures
from greenery.semantic.exports import run_exports
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store
from greenery.warehouse.dbt import MANIFEST_PATH as SEMANTIC_MANIFEST_PATH
from greenery.warehouse.publish import publish

EXPORTS_GROUP = "semantic_layer"
SERVING_GROUP = "serving"
PUBLISHED_KEY = AssetKey("published_warehouse")
PREVIEW_ROWS = 5
EXPORTS = exports(MANIFEST)
EXPOSURES = exposures(MANIFEST)


def model_key(unique_id: str) -> AssetKey:
    return TRANSLATOR.get_asset_spec(MANIFEST, unique_id, PROJECT).key


def export_key(export: Export) -> AssetKey:
    return AssetKey([export.schema, export.alias])


def _preview(export: Export) -> str:
    con = store.connect(read_only=True)
    try:
        frame = con.execute(f'select * from "{export.schema}"."{export.alias}" limit {PREVIEW_ROWS}').df()
    finally:
        con.close()
    return frame.to_markdown(index=False)


@multi_asset(
    specs=[
        AssetSpec(
            export_key(e),
            description=f"{e.label}: export `{e.name}` of saved query `{e.saved_query}`. {e.description}",
            deps=[model_key(m) for m in e.models],
            kinds={"duckdb", "metricflow"},
            metadata={"saved_query": e.saved_query, "relation": f"{e.schema}.{e.alias}"},
            skippable=True,
        )
        for e in EXPORTS
    ],
    group_name=EXPORTS_GROUP,
    can_subset=True,
    name="saved_query_exports",
)
def saved_query_exports(context: AssetExecutionContext) -> Iterator[MaterializeResult]:
    """The selected exports, one warm MetricFlow engine; any failing export fails the step."""
    chosen = [e for e in EXPORTS if export_key(e) in context.selected_asset_keys]
    results = run_exports(select=sorted({e.saved_query for e in chosen}))
    failed = [f"{r.spec.saved_query}: {r.error}" for r in results if r.error]
    for result in results:
        export = next(e for e in chosen if e.name == result.spec.name)
        if result.error:
            continue
        yield MaterializeResult(
            asset_key=export_key(export),
            metadata={
                "dagster/row_count": result.rows,
                "seconds": round(result.seconds, 3),
                "relation": f"{export.schema}.{export.alias}",
                "preview": MetadataValue.md(_preview(export)),
            },
        )
    if failed:
        raise Failure(description="exports failed: " + "; ".join(failed))


@asset(
    key=PUBLISHED_KEY,
    deps=[export_key(e) for e in EXPORTS],
    group_name=SERVING_GROUP,
    kinds={"duckdb"},
    description="The reader copy (warehouse + semantic manifest) the server and BI tools open.",
)
def published_warehouse() -> MaterializeResult:
    """Copy the warehouse and the semantic manifest into a new published version."""
    version = publish(manifest=SEMANTIC_MANIFEST_PATH)
    size = sum(p.stat().st_size for p in version.iterdir())
    return MaterializeResult(
        metadata={
            "version": version.name,
            "path": MetadataValue.path(str(version)),
            "size_mb": round(size / 2**20, 2),
        }
    )


def exposure_asset(exposure: Exposure):
    """An exposure as an asset: materialized when the published copy answers what it reads."""
    reads = [e for e in EXPORTS if e.saved_query in exposure.saved_queries]

    @asset(
        key=AssetKey(exposure.name),
        deps=[PUBLISHED_KEY, *(export_key(e) for e in reads), *(model_key(m) for m in exposure.models)],
        group_name=SERVING_GROUP,
        kinds={"dashboard"},
        owners=[exposure.owner] if "@" in exposure.owner else None,
        description=f"{exposure.label} (dbt exposure). {exposure.description}",
        metadata={"url": MetadataValue.url(exposure.url)} if exposure.url else None,
    )
    def _exposure(context: AssetExecutionContext) -> MaterializeResult:
        with SemanticLayer.published() as layer:
            rows = {name: layer.query(saved_query=name).table.num_rows for name in exposure.saved_queries}
        empty = [name for name, count in rows.items() if count == 0]
        if empty:
            raise Failure(description=f"{exposure.name} would show nothing for: {', '.join(empty)}")
        context.log.info(f"{exposure.name} reads {rows}")
        return MaterializeResult(metadata={"rows_by_saved_query": MetadataValue.json(rows)})

    return _exposure


EXPOSURE_ASSETS = [exposure_asset(e) for e in EXPOSURES]

"""Saved-query exports, run by the project itself (dbt Core marks them NO-OP).

Each export of each saved query is compiled by a warm MetricFlow engine and materialized in
the warehouse as a table or view (schema, alias and export_as from its config), optionally
also as a Parquet file. A table is built aside and swapped in within one transaction, and a
Parquet file is written aside and renamed, so a reader never sees half an export and a
failing saved query leaves its previous export as it was. An export killed mid-run leaves
its aside copies (``<alias>__building`` tables, ``.<alias>.parquet.tmp`` files); the next
run removes them, holding the warehouse lock. Each export notes which build it was
computed from (greenery.semantic.declarative), so the server can answer from it while current.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from greenery.semantic.declarative import record_export
from greenery.semantic.layer import SemanticLayer, SemanticLayerError
from greenery.warehouse import store
from greenery.warehouse.lock import exclusive, move_into_place, remove_leftovers

STAGING_SUFFIX = "__building"  # a table export being built, before it is swapped in
PARTIAL_PARQUET = ".*.parquet.tmp"  # a Parquet export being written, before it is renamed


@dataclass(frozen=True)
class ExportSpec:
    saved_query: str
    name: str
    schema: str
    alias: str
    export_as: str  # table | view

    @property
    def relation(self) -> str:
        return f'"{self.schema}"."{self.alias}"'


@dataclass(frozen=True)
class ExportResult:
    spec: ExportSpec
    rows: int
    seconds: float
    error: str | None = None


class ExportError(ValueError):
    """The exports asked for do not exist."""


def export_specs(layer: SemanticLayer, select: Sequence[str] = ()) -> list[ExportSpec]:
    """The exports of the saved queries (all, or those named in `select`)."""
    queries = {q.name: q for q in layer.lookup.semantic_manifest.saved_queries}
    unknown = sorted(set(select) - set(queries))
    if unknown:
        raise ExportError(f"unknown saved query: {', '.join(unknown)} (known: {', '.join(sorted(queries))})")
    specs = []
    for name in sorted(select or queries):
        for export in queries[name].exports:
            config = export.config
            specs.append(
                ExportSpec(
                    saved_query=name,
                    name=export.name,
                    schema=config.schema_name or "exports",
                    alias=config.alias or export.name,
                    export_as=str(config.export_as.value),
                )
            )
    return specs


def _materialize(layer: SemanticLayer, spec: ExportSpec, sql: str) -> int:
    con = layer.client.connection
    con.execute(f'create schema if not exists "{spec.schema}"')
    if spec.export_as == "view":
        con.execute(f"create or replace view {spec.relation} as {sql}")
        return con.execute(f"select count(*) from {spec.relation}").fetchone()[0]
    staging = f'"{spec.schema}"."{spec.alias}{STAGING_SUFFIX}"'
    con.execute(f"create or replace table {staging} as {sql}")
    rows = con.execute(f"select count(*) from {staging}").fetchone()[0]
    con.execute("begin")
    try:
        con.execute(f"drop table if exists {spec.relation}")
        con.execute(f'alter table {staging} rename to "{spec.alias}"')
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return rows


def _write_parquet(layer: SemanticLayer, spec: ExportSpec, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{spec.alias}.parquet"
    partial = folder / PARTIAL_PARQUET.replace("*", spec.alias)
    layer.client.connection.execute(f"copy (select * from {spec.relation}) to '{partial}' (format parquet)")
    move_into_place(partial, final)


def run_export(layer: SemanticLayer, spec: ExportSpec, parquet_dir: Path | None = None) -> ExportResult:
    """Materialize one export; a failure is returned (not raised) with MetricFlow's message."""
    start = time.perf_counter()
    try:
        sql = layer.compile(saved_query=spec.saved_query)
        rows = _materialize(layer, spec, sql)
        record_export(
            layer.client.connection,
            saved_query=spec.saved_query,
            export=spec.name,
            relation=spec.relation,
            manifest_sha256=layer.manifest_sha256,
        )
        if parquet_dir is not None:
            _write_parquet(layer, spec, parquet_dir)
    except (SemanticLayerError, duckdb.Error, OSError) as exc:
        return ExportResult(spec, 0, time.perf_counter() - start, error=str(exc).strip())
    return ExportResult(spec, rows, time.perf_counter() - start)


def run_exports(
    warehouse_file: Path | None = None,
    select: Sequence[str] = (),
    parquet_dir: Path | None = None,
) -> list[ExportResult]:
    """Run the exports with one warm engine writing to the warehouse; failures are in the results."""
    with (
        exclusive(store.resolve(warehouse_file), "export"),
        SemanticLayer(warehouse_file, read_only=False) as layer,
    ):
        specs = export_specs(layer, select)
        _remove_leftovers(layer, parquet_dir)
        results = [run_export(layer, spec, parquet_dir) for spec in specs]
    return results


def _remove_leftovers(layer: SemanticLayer, parquet_dir: Path | None) -> None:
    """What exports killed mid-run left: staging tables in the warehouse, partial Parquet files."""
    con = layer.client.connection
    staged = con.execute(
        "select table_schema, table_name from information_schema.tables"
        " where table_catalog = current_database() and table_type = 'BASE TABLE'"
        " and ends_with(table_name, ?)",
        [STAGING_SUFFIX],
    ).fetchall()
    for schema, name in staged:
        con.execute(f'drop table if exists "{schema}"."{name}"')
    if parquet_dir is not None:
        remove_leftovers(parquet_dir, PARTIAL_PARQUET)

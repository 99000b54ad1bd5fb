"""The embedded DuckDB warehouse: where it lives and how to open it.

Layout (one folder):
- ``greenery.duckdb`` (path from ``GREENERY_WAREHOUSE``): what dbt builds (staging, marts,
  snapshots).
- ``raw.duckdb`` beside it, attached as catalog ``raw``: the source tables at
  ``raw.public.<table>``, the names the course used in Snowflake, so the dbt sources are
  identical on both targets.

The raw catalog is written whole into a temporary file and swapped in with an atomic
rename, so a failed load leaves the previous raw data untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from greenery.schema import INVENTORY_BY_WEEK, TABLES, Table

ENV_VAR = "GREENERY_WAREHOUSE"
# The repository root: dbt_project.yml and profiles.yml live there.
PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_PATH = PROJECT_DIR / "warehouse" / "greenery.duckdb"
RAW_FILE = "raw.duckdb"
RAW_CATALOG = "raw"
RAW_SCHEMA = "public"
REPLAY_SCHEMA = "replay"
# Every table of the raw catalog and the schema it lives in.
RAW_TABLES: dict[str, tuple[str, Table]] = {
    **{t.name: (RAW_SCHEMA, t) for t in TABLES},
    INVENTORY_BY_WEEK.name: (REPLAY_SCHEMA, INVENTORY_BY_WEEK),
}


def warehouse_path() -> Path:
    """The warehouse file: ``$GREENERY_WAREHOUSE`` or ``warehouse/greenery.duckdb`` in the repo."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH).resolve()


def raw_path(warehouse: Path | None = None) -> Path:
    return (warehouse or warehouse_path()).with_name(RAW_FILE)


def connect(warehouse: Path | None = None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse with the raw catalog attached as ``raw``."""
    path = warehouse or warehouse_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    raw = raw_path(path)
    if raw.exists():
        mode = " (READ_ONLY)" if read_only else ""
        con.execute(f"ATTACH '{raw}' AS {RAW_CATALOG}{mode}")
    return con


@contextmanager
def _building_raw(warehouse: Path | None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a fresh raw catalog that replaces the current one on success only."""
    final = raw_path(warehouse)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        con.execute(f"CREATE SCHEMA {RAW_SCHEMA}")
        con.execute(f"CREATE SCHEMA {REPLAY_SCHEMA}")
        for schema, table in RAW_TABLES.values():
            con.execute(table.create_sql(f"{schema}.{table.name}"))
        yield con
        con.execute("CHECKPOINT")
        con.close()
        os.replace(tmp, final)
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise


def write_raw(chunks: Iterable[tuple[str, pd.DataFrame]], warehouse: Path | None = None) -> dict[str, int]:
    """Replace the whole raw catalog from ``(table, rows)`` chunks; returns rows per table.

    Chunks of different tables may come interleaved (the generator writes sessions, their
    orders and events together). Each frame has the table's columns, in any order, with
    values already of the right kind. Nothing is visible until every chunk is written.
    """
    counts = dict.fromkeys(RAW_TABLES, 0)
    with _building_raw(warehouse) as con:
        for name, chunk in chunks:
            if name not in RAW_TABLES:
                raise ValueError(f"unknown raw table {name!r} (known: {', '.join(RAW_TABLES)})")
            schema, _ = RAW_TABLES[name]
            columns = ", ".join(chunk.columns)
            con.register("chunk", chunk)
            con.execute(f"INSERT INTO {schema}.{name} ({columns}) SELECT {columns} FROM chunk")
            con.unregister("chunk")
            counts[name] += len(chunk)
    return counts


def replace_products(rows: pd.DataFrame, warehouse: Path | None = None) -> None:
    """Overwrite ``raw.public.products`` in place (one transaction), for the weekly replay."""
    con = duckdb.connect(str(raw_path(warehouse)))
    try:
        con.execute("BEGIN")
        con.execute(f"DELETE FROM {RAW_SCHEMA}.products")
        con.register("rows", rows)
        con.execute(
            f"INSERT INTO {RAW_SCHEMA}.products (product_id, name, price, inventory)"
            " SELECT product_id, name, price, inventory FROM rows"
        )
        con.execute("COMMIT")
    finally:
        con.close()


def raw_counts(warehouse: Path | None = None) -> dict[str, int]:
    """Row count of every raw table (empty when nothing is loaded yet)."""
    if not raw_path(warehouse).exists():
        return {}
    con = duckdb.connect(str(raw_path(warehouse)), read_only=True)
    try:
        return {
            name: con.execute(f"SELECT count(*) FROM {schema}.{name}").fetchone()[0]
            for name, (schema, _) in RAW_TABLES.items()
        }
    finally:
        con.close()


# ---- published copies for readers ------------------------------------------------------
# DuckDB allows one writer per file, and a reader in another process blocks the writer.
# Readers (the server, BI tools) therefore never open the warehouse itself: after each
# successful build, `publish` copies it with its semantic manifest into a new folder and
# atomically repoints `published/CURRENT` at it. Readers open the copy CURRENT names and
# switch when it changes; a rebuild never touches a file a reader has open.
PUBLISHED_DIR = "published"
CURRENT_FILE = "CURRENT"
KEEP_PUBLISHED = 3


def published_root(wh: Path | None = None) -> Path:
    return (wh or warehouse_path()).parent / PUBLISHED_DIR


def publish(manifest: Path, wh: Path | None = None) -> Path:
    """Copy the warehouse and the semantic manifest into a new published version; return its folder."""
    import shutil
    import time

    wh = wh or warehouse_path()
    root = published_root(wh)
    root.mkdir(parents=True, exist_ok=True)
    version = root / f"v{time.time_ns()}"
    staging = root / f".{version.name}.tmp"
    staging.mkdir()
    con = duckdb.connect(str(wh))
    con.execute("CHECKPOINT")  # fold the WAL in, so the copy is the whole database
    con.close()
    shutil.copy2(wh, staging / wh.name)
    shutil.copy2(manifest, staging / manifest.name)
    staging.rename(version)
    pointer = root / f".{CURRENT_FILE}.tmp"
    pointer.write_text(version.name)
    os.replace(pointer, root / CURRENT_FILE)
    for old in sorted(p for p in root.glob("v*") if p.is_dir())[:-KEEP_PUBLISHED]:
        shutil.rmtree(old, ignore_errors=True)
    return version


def current_published(wh: Path | None = None) -> Path | None:
    """The folder of the newest published version (warehouse copy + semantic manifest), if any."""
    root = published_root(wh)
    try:
        name = (root / CURRENT_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return root / name

"""Published copies of the warehouse for readers.

DuckDB allows one writer per file, and a reader in another process blocks the writer.
Readers (the server, BI tools) therefore never open the warehouse itself: after each
successful build, `publish` copies it with its semantic manifest into a new folder and
atomically repoints ``published/CURRENT`` at it. Readers open the copy CURRENT names and
switch when it changes; a rebuild never touches a file a reader has open.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from greenery.warehouse import store
from greenery.warehouse.dbt import MANIFEST_PATH

PUBLISHED_DIR = "published"
CURRENT_FILE = "CURRENT"
KEEP_PUBLISHED = 3


def published_root(warehouse_file: Path | None = None) -> Path:
    return store.resolve(warehouse_file).parent / PUBLISHED_DIR


def publish(warehouse_file: Path | None = None, manifest: Path = MANIFEST_PATH) -> Path:
    """Copy the warehouse and the semantic manifest into a new published version; return its folder."""
    warehouse_file = store.resolve(warehouse_file)
    root = published_root(warehouse_file)
    root.mkdir(parents=True, exist_ok=True)
    version = root / f"v{time.time_ns()}"
    staging = root / f".{version.name}.tmp"
    staging.mkdir()
    con = store.open_duckdb(warehouse_file, warehouse_file=warehouse_file)
    con.execute("CHECKPOINT")  # fold the WAL in, so the copy is the whole database
    con.close()
    shutil.copy2(warehouse_file, staging / warehouse_file.name)
    shutil.copy2(manifest, staging / manifest.name)
    staging.rename(version)
    pointer = root / f".{CURRENT_FILE}.tmp"
    pointer.write_text(version.name)
    os.replace(pointer, root / CURRENT_FILE)
    for old in sorted(p for p in root.glob("v*") if p.is_dir())[:-KEEP_PUBLISHED]:
        shutil.rmtree(old, ignore_errors=True)
    return version


def current_published(warehouse_file: Path | None = None) -> Path | None:
    """The folder of the newest published version (warehouse copy + semantic manifest), if any."""
    root = published_root(warehouse_file)
    try:
        name = (root / CURRENT_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return root / name

"""The dbt manifest the code location is built from, and what it says about the semantic layer.

`dbt parse` writes ``target/manifest.json`` (the dbt assets) and
``target/semantic_manifest.json`` (what the exports and the published copy carry); it runs
when either is missing or older than a file of the dbt project.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from greenery.warehouse import store
from greenery.warehouse.dbt import MANIFEST_PATH as SEMANTIC_MANIFEST_PATH
from greenery.warehouse.dbt import TARGET_DIR, run_dbt

MANIFEST_PATH = TARGET_DIR / "manifest.json"
# What `dbt parse` reads: a change to any of them makes the manifest stale.
PROJECT_FILES = ("dbt_project.yml", "profiles.yml")
PROJECT_FOLDERS = (
    "models",
    "semantic_models",
    "metrics",
    "saved_queries",
    "snapshots",
    "macros",
    "data_tests",
)


def _project_files() -> Iterator[Path]:
    for name in PROJECT_FILES:
        yield store.PROJECT_DIR / name
    for folder in PROJECT_FOLDERS:
        yield from (p for p in (store.PROJECT_DIR / folder).rglob("*") if p.is_file())


def ensure_manifest() -> Path:
    """``target/manifest.json``, parsed anew when missing or older than the dbt project."""
    newest = max(p.stat().st_mtime for p in _project_files())
    outputs = (MANIFEST_PATH, SEMANTIC_MANIFEST_PATH)
    if any(not p.is_file() or p.stat().st_mtime < newest for p in outputs):
        run_dbt(["parse"])
    return MANIFEST_PATH


@cache
def load_manifest() -> dict[str, Any]:
    return json.loads(ensure_manifest().read_text())


@dataclass(frozen=True)
class Export:
    """One export of one saved query, and the dbt models (unique ids) its metrics read."""

    saved_query: str
    name: str
    schema: str
    alias: str
    label: str
    description: str
    models: tuple[str, ...]


@dataclass(frozen=True)
class Exposure:
    """A dbt exposure: who reads the semantic layer, and which saved queries it reads."""

    name: str
    label: str
    url: str
    owner: str
    description: str
    saved_queries: tuple[str, ...]
    models: tuple[str, ...]  # unique ids of the dbt models it depends on


def _models_under(manifest: dict[str, Any], unique_ids: list[str]) -> set[str]:
    """The dbt models reached from metrics and semantic models by their depends_on."""
    found: set[str] = set()
    pending = list(unique_ids)
    while pending:
        unique_id = pending.pop()
        kind = unique_id.split(".")[0]
        if kind == "model":
            found.add(unique_id)
        elif kind in ("metric", "semantic_model"):
            pending.extend(manifest[f"{kind}s"][unique_id]["depends_on"]["nodes"])
    return found


def exports(manifest: dict[str, Any]) -> list[Export]:
    """Every export of every saved query, in name order."""
    found = []
    for query in manifest["saved_queries"].values():
        models = tuple(sorted(_models_under(manifest, query["depends_on"]["nodes"])))
        for export in query["exports"]:
            config = export["config"]
            found.append(
                Export(
                    saved_query=query["name"],
                    name=export["name"],
                    schema=config.get("schema_name") or "exports",
                    alias=config.get("alias") or export["name"],
                    label=query.get("label") or query["name"],
                    description=(query.get("description") or "").strip(),
                    models=models,
                )
            )
    return sorted(found, key=lambda e: (e.saved_query, e.name))


def exposures(manifest: dict[str, Any]) -> list[Exposure]:
    """The exposures that read saved queries (``meta.saved_queries``)."""
    found = []
    for exposure in manifest["exposures"].values():
        owner = exposure.get("owner") or {}
        found.append(
            Exposure(
                name=exposure["name"],
                label=exposure.get("label") or exposure["name"],
                url=exposure.get("url") or "",
                owner=owner.get("email") or owner.get("name") or "",
                description=(exposure.get("description") or "").strip(),
                saved_queries=tuple(exposure.get("meta", {}).get("saved_queries", ())),
                models=tuple(sorted(_models_under(manifest, exposure["depends_on"]["nodes"]))),
            )
        )
    return sorted(found, key=lambda e: e.name)

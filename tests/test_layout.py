"""The package's shape: rooms whose imports point down, no cycles, benchmarks outside."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import imports
from devtools.imports import Edge
from greenery.warehouse import store

REPO = Path(__file__).resolve().parents[1]


def _paths(*modules: str) -> dict[str, Path]:
    return {m: REPO / "src" / Path(*m.split(".")).with_suffix(".py") for m in modules}


def test_the_package_has_no_cycle_no_upward_and_no_hidden_import() -> None:
    known = imports.modules()
    assert imports.problems(imports.edges(known), known) == []
    assert {"greenery.cli", "greenery.serve.service", "greenery.warehouse.store"} <= set(known)


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert imports.cycles(graph) == [["a", "b", "c"]]


def test_an_upward_import_and_an_adapter_importing_an_adapter_are_refused() -> None:
    known = _paths("greenery.warehouse.store", "greenery.serve.service", "greenery.serve.graphql")
    found = imports.problems(
        [
            Edge("greenery.warehouse.store", "greenery.serve.service", 3, top_level=True),
            Edge("greenery.serve.graphql", "greenery.serve.flight", 4, top_level=True),
        ],
        known,
    )
    assert any("imports point down" in p for p in found)
    assert any("adapters never import each other" in p for p in found)


def test_an_import_inside_a_function_is_refused() -> None:
    known = _paths("greenery.cli")
    found = imports.problems([Edge("greenery.cli", "greenery.demo", 9, top_level=False)], known)
    assert found == ["src/greenery/cli.py:9: greenery.cli imports greenery.demo inside a function or class"]


def test_benchmarks_live_outside_the_package() -> None:
    assert not list((REPO / "src" / "greenery").rglob("bench*"))
    assert (REPO / "benchmarks" / "__main__.py").is_file()


def test_every_duckdb_the_package_opens_is_bounded() -> None:
    """One place opens DuckDB (store.open_duckdb); only the SQL API's sandbox has its own stricter config."""
    opened = {
        str(path.relative_to(REPO))
        for path in (REPO / "src" / "greenery").rglob("*.py")
        if "duckdb.connect(" in path.read_text()
    }
    assert opened == {"src/greenery/warehouse/store.py", "src/greenery/serve/sql.py"}


def test_open_duckdb_applies_the_memory_limit_and_spill_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(store.MEMORY_ENV, "321MB")
    con = store.open_duckdb(warehouse_file=tmp_path / "greenery.duckdb")
    limit, spill = con.execute(
        "select current_setting('memory_limit'), current_setting('temp_directory')"
    ).fetchone()
    con.close()
    assert limit == "306.1 MiB"  # 321 MB
    assert spill == str(tmp_path / ".duckdb-spill")

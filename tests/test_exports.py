"""`greenery export`: every saved query's exports materialized, atomically, failures isolated."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from greenery.cli import main
from greenery.semantic.exports import ExportSpec, run_export, run_exports
from greenery.semantic.layer import SemanticLayer
from greenery.warehouse import store


@pytest.fixture
def warehouse_copy(course_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the course warehouse (tests here write to it)."""
    copy = tmp_path / course_warehouse.name
    shutil.copy(course_warehouse, copy)
    monkeypatch.setenv(store.ENV_VAR, str(copy))
    return copy


def _table(warehouse_file: Path, relation: str) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse_file), read_only=True)
    try:
        sql = relation if relation.startswith("select") else f"select * from {relation}"
        return con.execute(sql).df()
    finally:
        con.close()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True).convert_dtypes()


def test_every_export_equals_its_saved_query(warehouse_copy: Path, tmp_path: Path) -> None:
    results = run_exports(warehouse_copy, parquet_dir=tmp_path / "parquet")
    assert [r.error for r in results] == [None] * len(results)
    assert len(results) == 8  # one per saved query
    with SemanticLayer(warehouse_copy) as layer:
        for result in results:
            expected = _sorted(layer.query(saved_query=result.spec.saved_query).table.to_pandas())
            exported = _sorted(_table(warehouse_copy, result.spec.relation))
            pd.testing.assert_frame_equal(exported, expected, check_dtype=False)
            assert result.rows == len(expected)
            parquet = _sorted(pd.read_parquet(tmp_path / "parquet" / f"{result.spec.alias}.parquet"))
            pd.testing.assert_frame_equal(parquet, expected, check_dtype=False)
    funnel = _table(warehouse_copy, "exports.funnel_overall").iloc[0]
    assert funnel[
        ["sessions_with_page_view", "sessions_with_add_to_cart", "sessions_with_checkout"]
    ].tolist() == [
        578,
        467,
        361,
    ]


def test_a_failing_saved_query_keeps_its_previous_export(
    warehouse_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export"]) == 0
    before = _table(warehouse_copy, "exports.inventory_on_hand_by_product_by_week")
    con = duckdb.connect(str(warehouse_copy))
    con.execute("drop table marts.fct_product_inventory_daily")  # its saved query can no longer run
    con.close()

    assert main(["export"]) == 1
    err = capsys.readouterr().err
    assert "FAILED inventory_on_hand_by_product_by_week" in err
    assert "fct_product_inventory_daily" in err  # the warehouse's message, passed on
    assert "1 export(s) failed, previous contents kept: inventory_on_hand_by_product_by_week" in err
    pd.testing.assert_frame_equal(
        _table(warehouse_copy, "exports.inventory_on_hand_by_product_by_week"), before
    )
    leftovers = _table(
        warehouse_copy, "select table_name from information_schema.tables where table_name like '%__building'"
    )
    assert leftovers.empty


def test_view_exports_and_unknown_selection(warehouse_copy: Path) -> None:
    with SemanticLayer(warehouse_copy, read_only=False) as layer:
        spec = ExportSpec(
            "funnel_by_product", "funnel_by_product", "exports", "funnel_by_product_view", "view"
        )
        result = run_export(layer, spec)
        assert result.error is None
        assert result.rows == 30
    kinds = _table(
        warehouse_copy,
        "select table_type from information_schema.tables where table_name = 'funnel_by_product_view'",
    )
    assert kinds["table_type"].tolist() == ["VIEW"]
    assert main(["export", "--select", "no_such_query"]) == 1

"""dbt's `unique` test and the project's `unique_combination` on DuckDB (macros/tests/): on a
whole relation they sort the hashes of the values and group only the values whose hash
repeats; they must find what a group by finds, on uuids, on text and on pairs.

Runs dbt on a copy of the course warehouse with repeated rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from conftest import copy_warehouse, data_test_results, read_sql

from greenery.warehouse import store
from greenery.warehouse.dbt import DbtError, run_dbt

NO_WINDOWS = json.dumps({"incremental_test_windows": {}})  # every test reads its whole relation


def repeat_rows(warehouse_file: Path, table: str, column: str) -> list[tuple[object, int]]:
    """In the raw `table`, the rows of its first value of `column` twice and of its second three
    times; returns each repeated value and its count, as dbt's group by finds them."""
    with duckdb.connect(str(store.raw_path(warehouse_file))) as raw:
        first, second = (
            row[0]
            for row in raw.execute(f"select {column} from public.{table} order by 1 limit 2").fetchall()
        )
        for value, copies in ((first, 1), (second, 2)):
            raw.execute(
                f"insert into public.{table} select {table}.* from public.{table}, range(?)"
                f" where {column} = ?",
                [copies, value],
            )
        return raw.execute(
            f"select {column}, count(*) from public.{table} group by 1 having count(*) > 1 order by 1"
        ).fetchall()


@pytest.mark.parametrize(
    ("table", "column", "status"),
    [
        ("events", "event_id", "warn"),  # a uuid; its severity: staging keeps one copy
        ("promos", "promo_id", "fail"),  # text
    ],
)
def test_unique_finds_each_repeated_value_and_its_copies(
    course_warehouse: Path, warehouse_file: Path, table: str, column: str, status: str
) -> None:
    copy_warehouse(course_warehouse, warehouse_file)
    expected = repeat_rows(warehouse_file, table, column)
    assert [copies for _, copies in expected] == [2, 3]
    test_name = f"source_unique_greenery_{table}_{column}"

    args = ["test", "--select", test_name, "--store-failures", "--vars", NO_WINDOWS]
    if status == "fail":
        with pytest.raises(DbtError, match=test_name):
            run_dbt(args, warehouse_file=warehouse_file)
    else:
        run_dbt(args, warehouse_file=warehouse_file)

    result = data_test_results()[test_name]
    assert (result["status"], result["failures"]) == (status, 2)
    assert "lag(value_hash) over (order by value_hash)" in result["compiled_code"]  # not dbt's group by
    found = read_sql(
        warehouse_file, f"select unique_field, n_records from dbt_test__audit.{test_name} order by 1"
    )
    assert list(found.itertuples(index=False, name=None)) == [(str(value), n) for value, n in expected]


def test_unique_combination_finds_each_repeated_pair(course_warehouse: Path, warehouse_file: Path) -> None:
    copy_warehouse(course_warehouse, warehouse_file)
    with duckdb.connect(str(warehouse_file)) as con:
        con.execute(
            "insert into intermediate.int_product_sessions select * from intermediate.int_product_sessions"
            " order by session_id, product_id limit 1"
        )
        expected = con.execute(
            "select cast(session_id as varchar), cast(product_id as varchar), count(*)"
            " from intermediate.int_product_sessions group by all having count(*) > 1"
        ).fetchall()
    assert len(expected) == 1
    test_name = "unique_combination_int_product_sessions_session_id__product_id"

    with pytest.raises(DbtError, match=test_name):
        run_dbt(
            ["test", "--select", test_name, "--store-failures", "--vars", NO_WINDOWS],
            warehouse_file=warehouse_file,
        )

    result = data_test_results()[test_name]
    assert (result["status"], result["failures"]) == ("fail", 1)
    assert "lag(value_hash) over (order by value_hash)" in result["compiled_code"]  # not a group by of all
    stored = f"select session_id, product_id, n_records from dbt_test__audit.{test_name}"
    found = read_sql(warehouse_file, stored)
    assert list(found.itertuples(index=False, name=None)) == expected

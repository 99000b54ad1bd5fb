"""dbt's `unique` test and the project's `unique_combination` on DuckDB (macros/tests/): on a
whole relation they sort the hashes of the values and group only the values whose hash
repeats; they must find what a group by finds, on uuids, on text and on pairs.

One copy of the course warehouse with repeated rows, one `dbt test` of the three tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from conftest import data_test_results, read_sql
from greenery.warehouse import store
from greenery.warehouse.build import copy_warehouse
from greenery.warehouse.dbt import DbtError, run_dbt

NO_WINDOWS = json.dumps({"test_windows": False})  # every test reads its whole relation
SORTED_HASHES = "lag(value_hash) over (order by value_hash)"  # not a group by of every value
RAW_UNIQUE = {  # (table, column) -> the test's status
    ("events", "event_id"): "warn",  # a uuid; its severity: staging keeps one copy
    ("promos", "promo_id"): "fail",  # text
}
PAIR_UNIQUE = "unique_combination_int_product_sessions_session_id__product_id"


def raw_unique(table: str, column: str) -> str:
    return f"source_unique_greenery_{table}_{column}"


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


def repeat_a_product_session(warehouse_file: Path) -> list[tuple[str, str, int]]:
    """One product session stored twice; returns its (session, product, count), as a group by finds it."""
    with duckdb.connect(str(warehouse_file)) as con:
        con.execute(
            "insert into intermediate.int_product_sessions select * from intermediate.int_product_sessions"
            " order by session_id, product_id limit 1"
        )
        return con.execute(
            "select cast(session_id as varchar), cast(product_id as varchar), count(*)"
            " from intermediate.int_product_sessions group by all having count(*) > 1"
        ).fetchall()


@pytest.fixture(scope="module")
def repeated(
    course_warehouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, list], dict[str, dict]]:
    """The warehouse with repeated rows, what a group by finds repeated, by test name, and the
    tests' results from one `dbt test --store-failures`."""
    warehouse_file = copy_warehouse(course_warehouse, tmp_path_factory.mktemp("unique") / "greenery.duckdb")
    expected: dict[str, list] = {
        raw_unique(table, column): repeat_rows(warehouse_file, table, column) for table, column in RAW_UNIQUE
    }
    expected[PAIR_UNIQUE] = repeat_a_product_session(warehouse_file)
    with pytest.raises(DbtError) as failed:
        run_dbt(
            ["test", "--select", *expected, "--store-failures", "--vars", NO_WINDOWS],
            warehouse_file=warehouse_file,
        )
    assert raw_unique("promos", "promo_id") in str(failed.value) and PAIR_UNIQUE in str(failed.value)
    return warehouse_file, expected, data_test_results()


@pytest.mark.parametrize(("table", "column"), list(RAW_UNIQUE))
def test_unique_finds_each_repeated_value_and_its_copies(
    repeated: tuple[Path, dict[str, list], dict[str, dict]], table: str, column: str
) -> None:
    warehouse_file, expected, results = repeated
    test_name = raw_unique(table, column)
    assert [copies for _, copies in expected[test_name]] == [2, 3]

    result = results[test_name]
    assert (result["status"], result["failures"]) == (RAW_UNIQUE[table, column], 2)
    assert SORTED_HASHES in result["compiled_code"]
    found = read_sql(
        warehouse_file, f"select unique_field, n_records from dbt_test__audit.{test_name} order by 1"
    )
    assert list(found.itertuples(index=False, name=None)) == [
        (str(value), n) for value, n in expected[test_name]
    ]


def test_unique_combination_finds_each_repeated_pair(
    repeated: tuple[Path, dict[str, list], dict[str, dict]],
) -> None:
    warehouse_file, expected, results = repeated
    assert len(expected[PAIR_UNIQUE]) == 1

    result = results[PAIR_UNIQUE]
    assert (result["status"], result["failures"]) == ("fail", 1)
    assert SORTED_HASHES in result["compiled_code"]
    stored = f"select session_id, product_id, n_records from dbt_test__audit.{PAIR_UNIQUE}"
    found = read_sql(warehouse_file, stored)
    assert list(found.itertuples(index=False, name=None)) == expected[PAIR_UNIQUE]

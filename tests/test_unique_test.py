"""dbt's `unique` test on DuckDB (macros/tests/unique.sql): on a uuid column of a whole relation
it sorts the ids and compares each with the one before; it must find what dbt's group by finds.

Runs dbt on a copy of the course warehouse with repeated raw event ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from conftest import copy_warehouse, data_test_results, read_sql

from greenery.warehouse import store
from greenery.warehouse.dbt import run_dbt

RAW_UNIQUE = "source_unique_greenery_events_event_id"
NO_WINDOWS = json.dumps({"incremental_test_windows": {}})  # every test reads its whole relation


def test_unique_on_uuids_finds_each_repeated_id_and_its_copies(
    course_warehouse: Path, warehouse_file: Path
) -> None:
    copy_warehouse(course_warehouse, warehouse_file)
    with duckdb.connect(str(store.raw_path(warehouse_file))) as raw:
        first, second = (
            row[0] for row in raw.execute("select event_id from public.events order by 1 limit 2").fetchall()
        )
        for event_id, copies in ((first, 1), (second, 2)):
            raw.execute(
                "insert into public.events select events.* from public.events, range(?) where event_id = ?",
                [copies, event_id],
            )
        expected = raw.execute(
            "select event_id, count(*) from public.events group by 1 having count(*) > 1 order by 1"
        ).fetchall()
    assert [copies for _, copies in expected] == [2, 3]

    run_dbt(
        ["test", "--select", RAW_UNIQUE, "--store-failures", "--vars", NO_WINDOWS],
        warehouse_file=warehouse_file,
    )

    result = data_test_results()[RAW_UNIQUE]
    assert (result["status"], result["failures"]) == ("warn", 2)  # its severity: staging keeps one copy
    sorted_ids = "lag(event_id) over (order by event_id)"  # not dbt's group by
    assert sorted_ids in result["compiled_code"]
    found = read_sql(
        warehouse_file, f"select unique_field, n_records from dbt_test__audit.{RAW_UNIQUE} order by 1"
    )
    assert list(found.itertuples(index=False, name=None)) == [(str(event_id), n) for event_id, n in expected]

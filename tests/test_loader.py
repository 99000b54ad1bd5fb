"""`greenery load --from-csv`: round trip on the course CSVs, and bad input loses nothing."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from greenery.cli import main
from greenery.data.load import LoadError
from greenery.warehouse import store
from greenery.warehouse.build import fresh_raw

COURSE_COUNTS = {
    "addresses": 150,
    "users": 130,
    "promos": 6,
    "products": 30,
    "orders": 361,
    "order_items": 862,
    "events": 3553,
    "product_inventory_by_week": 120,
}


def _raw_fingerprint(warehouse_file: Path) -> str:
    """A digest of every raw row, to prove a failed load changed nothing."""
    con = duckdb.connect(str(store.raw_path(warehouse_file)), read_only=True)
    digest = hashlib.sha256()
    for name, (schema, _) in store.RAW_TABLES.items():
        rows = con.execute(f"select * from {schema}.{name} order by all").fetchall()
        digest.update(repr(rows).encode())
    con.close()
    return digest.hexdigest()


def test_course_csvs_round_trip(course_data: Path, warehouse_file: Path) -> None:
    assert main(["load", "--from-csv", str(course_data)]) == 0
    assert store.raw_counts(warehouse_file) == COURSE_COUNTS

    con = store.connect(warehouse_file)
    types = dict(
        con.execute(
            "select column_name, data_type from information_schema.columns"
            " where table_catalog = 'raw' and table_schema = 'public' and table_name = 'orders'"
        ).fetchall()
    )
    assert types["order_total"] == "DOUBLE"
    assert types["created_at"] == "TIMESTAMP"
    assert types["promo_id"] == "VARCHAR"
    first_order = con.execute(
        "select created_at, order_total from raw.public.orders"
        " where order_id = '8329a65b-7ddf-4250-aeee-bd625f8a401a'"
    ).fetchone()
    assert str(first_order[0]) == "2021-02-11 23:30:34"  # the CSV's 23:30:34Z, kept in UTC
    assert first_order[1] == pytest.approx(557.06)
    short_zips = con.execute("select count(*) from raw.public.addresses where zipcode < 10000").fetchone()[0]
    assert short_zips == 6

    funnel = con.execute(
        """
        select
            count(distinct case when event_type = 'page_view' then session_id end),
            count(distinct case when event_type = 'add_to_cart' then session_id end),
            count(distinct case when event_type = 'checkout' then session_id end)
        from raw.public.events
        """
    ).fetchone()
    assert funnel == (578, 467, 361)
    week3 = con.execute(
        "select name, inventory from raw.replay.product_inventory_by_week"
        " where week = 3 and inventory = 0 order by name"
    ).fetchall()
    assert week3 == [("Pothos", 0), ("String of pearls", 0)]
    con.close()


def _replace_in_file(folder: Path, file: str, old: str, new: str) -> None:
    path = folder / file
    text = path.read_text()
    assert old in text, f"test set-up: {old!r} not in {file}"
    path.write_text(text.replace(old, new, 1))


def _drop_file(folder: Path) -> None:
    (folder / "promos.csv").unlink()


def _drop_column(folder: Path) -> None:
    _replace_in_file(folder, "events.csv", "event_id,session_id,", "event_id,")


def _bad_timestamp(folder: Path) -> None:
    _replace_in_file(folder, "orders.csv", "2021-02-11T23:30:34Z", "yesterday")


def _bad_number(folder: Path) -> None:
    _replace_in_file(
        folder,
        "order_items.csv",
        ",c7050c3b-a898-424d-8d98-ab0aaad7bef4,3",
        ",c7050c3b-a898-424d-8d98-ab0aaad7bef4,three",
    )


def _duplicate_key(folder: Path) -> None:
    lines = (folder / "products.csv").read_text().splitlines()
    (folder / "products.csv").write_text("\n".join([*lines, lines[1]]) + "\n")


def _orphan_key(folder: Path) -> None:
    _replace_in_file(folder, "orders.csv", "b3367c91-53bd-4aac-ab6d-0a596fe382c2", "no-such-user")


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (_drop_file, "promos.csv: file missing"),
        (_drop_column, "events.csv: missing column(s) session_id"),
        (_bad_timestamp, "orders.csv, column created_at, line 2: 'yesterday' is not an ISO-8601 timestamp"),
        (_bad_number, "order_items.csv, column quantity, line 2: 'three' is not a whole number"),
        (_duplicate_key, "products.csv, column product_id, line 32: duplicate primary key"),
        (_orphan_key, "orders.csv, column user_id, line 2: 'no-such-user' not found in users.user_id"),
    ],
)
def test_bad_input_names_the_problem_and_keeps_the_warehouse(
    course_data: Path,
    warehouse_file: Path,
    tmp_path: Path,
    corrupt: Callable[[Path], None],
    expected: str,
) -> None:
    fresh_raw(warehouse_file, course_data=course_data)
    before = _raw_fingerprint(warehouse_file)
    bad = tmp_path / "bad"
    shutil.copytree(course_data, bad)
    corrupt(bad)

    with pytest.raises(LoadError) as error:
        fresh_raw(warehouse_file, course_data=bad)

    assert expected in str(error.value)
    assert "warehouse is unchanged" in str(error.value)
    assert _raw_fingerprint(warehouse_file) == before
    assert not list(warehouse_file.parent.glob("*.tmp"))


def test_cli_reports_bad_input_without_traceback(
    course_data: Path, warehouse_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(course_data, bad)
    _bad_timestamp(bad)
    assert main(["load", "--from-csv", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "greenery load: error:" in err
    assert "orders.csv, column created_at, line 2" in err
    assert not store.raw_path(warehouse_file).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["replay", "--weeks", "1-99999999999999"],
            "greenery replay: error: --weeks '1-99999999999999': weeks go",
        ),
        (["replay", "--weeks", "two"], "greenery replay: error: --weeks 'two': expected a week or a range"),
        (
            ["generate", "--scale", str(10**20)],
            "greenery generate: error: --scale must be a whole number from 1",
        ),
    ],
)
def test_out_of_range_arguments_are_errors_not_tracebacks(
    args: list[str], message: str, warehouse_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err
    assert not store.raw_path(warehouse_file).exists()

"""`greenery load --from-csv`: round trip on the course CSVs, and bad input loses nothing."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from greenery.cli import main
from greenery.data.load import LoadError, read_arrivals, read_folder
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


# uuids in no table, as every id the loader takes is a uuid
UNKNOWN_USER = "00000000-0000-4000-8000-000000000000"
UNKNOWN_ORDER = "00000000-0000-4000-8000-000000000404"
NEW_EVENT = "00000000-0000-4000-8000-000000000001"


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
    _replace_in_file(folder, "orders.csv", "b3367c91-53bd-4aac-ab6d-0a596fe382c2", UNKNOWN_USER)


def _id_not_a_uuid(folder: Path) -> None:
    _replace_in_file(folder, "events.csv", "a646b9aa-0044-4fbd-8bae-a1018f5d4ace", "session-1")


def _infinite_price(folder: Path) -> None:
    _replace_in_file(folder, "products.csv", "Pothos,30.5,40", "Pothos,inf,40")


def _negative_price(folder: Path) -> None:
    _replace_in_file(folder, "products.csv", "Pothos,30.5,40", "Pothos,-30.5,40")


def _too_large_integer(folder: Path) -> None:
    _replace_in_file(folder, "products.csv", "Pothos,30.5,40", "Pothos,30.5,99999999999999999999")


def _weekly_line(folder: Path, line: int) -> str:
    return (folder / "product_inventory_by_week.csv").read_text().splitlines(keepends=True)[line - 1]


def _weekly_duplicate(folder: Path) -> None:
    with (folder / "product_inventory_by_week.csv").open("a") as file:
        file.write(_weekly_line(folder, 2))


def _weekly_negative_inventory(folder: Path) -> None:
    line = _weekly_line(folder, 2)
    week, product_id, name, _ = line.rstrip("\n").split(",")
    _replace_in_file(folder, "product_inventory_by_week.csv", line, f"{week},{product_id},{name},-1\n")


def _weekly_bad_week(folder: Path) -> None:
    line = _weekly_line(folder, 3)
    _replace_in_file(folder, "product_inventory_by_week.csv", line, "0" + line[1:])


def _weekly_missing_column(folder: Path) -> None:
    _replace_in_file(folder, "product_inventory_by_week.csv", "name,inventory", "name,stock")


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (_infinite_price, "products.csv, column price, line 2: 'inf' is not a finite number"),
        (_negative_price, "products.csv, column price, line 2: '-30.5' is negative"),
        (
            _too_large_integer,
            "products.csv, column inventory, line 2: '99999999999999999999' is out of range",
        ),
        (
            _weekly_duplicate,
            "product_inventory_by_week.csv, column week+product_id, line 122: duplicate primary key '1, ",
        ),
        (
            _weekly_negative_inventory,
            "product_inventory_by_week.csv, column inventory, line 2: '-1' is negative",
        ),
        (
            _weekly_bad_week,
            "product_inventory_by_week.csv, column week, line 3: 0 is not a week from 1 to 520",
        ),
        (_weekly_missing_column, "product_inventory_by_week.csv: missing column(s) inventory"),
        (_drop_file, "promos.csv: file missing"),
        (_drop_column, "events.csv: missing column(s) session_id"),
        (_bad_timestamp, "orders.csv, column created_at, line 2: 'yesterday' is not an ISO-8601 timestamp"),
        (_bad_number, "order_items.csv, column quantity, line 2: 'three' is not a whole number"),
        (_duplicate_key, "products.csv, column product_id, line 32: duplicate primary key"),
        (_orphan_key, f"orders.csv, column user_id, line 2: '{UNKNOWN_USER}' not found in users.user_id"),
        (_id_not_a_uuid, "events.csv, column session_id, line 2: 'session-1' is not a uuid"),
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


def _arrivals(course_data: Path, folder: Path, events: slice, orders: slice = slice(0)) -> Path:
    """A folder of arrivals: rows `events` of events.csv and `orders` of orders.csv (the header kept)."""
    folder.mkdir()
    for name, rows in (("events", events), ("orders", orders)):
        lines = (course_data / f"{name}.csv").read_text().splitlines(keepends=True)
        body = lines[1:][rows]
        if body:
            (folder / f"{name}.csv").write_text(lines[0] + "".join(body))
    return folder


def test_append_adds_new_rows(
    course_data: Path, warehouse_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = read_folder(course_data)
    frames["events"] = frames["events"].iloc[:-100]
    store.write_raw(frames.items(), warehouse_file)

    assert (
        main(
            [
                "load",
                "--append",
                "--from-csv",
                str(_arrivals(course_data, tmp_path / "day", slice(-100, None))),
            ]
        )
        == 0
    )

    assert "appended:" in capsys.readouterr().out
    assert store.raw_counts(warehouse_file) == COURSE_COUNTS
    full = tmp_path / "full" / "greenery.duckdb"
    fresh_raw(full, course_data=course_data)
    assert _raw_fingerprint(warehouse_file) == _raw_fingerprint(full)


def test_append_refuses_keys_already_loaded_and_writes_nothing(
    course_data: Path, warehouse_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_raw(warehouse_file, course_data=course_data)
    before = _raw_fingerprint(warehouse_file)
    # the course's first event and first order, again
    folder = _arrivals(course_data, tmp_path / "day", slice(0, 1), slice(0, 1))
    first = read_folder(course_data)

    assert main(["load", "--append", "--from-csv", str(folder)]) == 1

    err = capsys.readouterr().err
    assert err.startswith("greenery load: error: the raw data was not loaded (the warehouse is unchanged)")
    assert f"events.csv, line 2: events.event_id '{first['events']['event_id'][0]}' is already loaded" in err
    assert f"orders.csv, line 2: orders.order_id '{first['orders']['order_id'][0]}' is already loaded" in err
    assert "Traceback" not in err
    assert _raw_fingerprint(warehouse_file) == before


def test_append_is_all_or_nothing(course_data: Path, warehouse_file: Path, tmp_path: Path) -> None:
    """New orders and one event naming an order that exists nowhere: nothing is appended."""
    frames = read_folder(course_data)
    frames["orders"] = frames["orders"].iloc[:-5]
    frames["order_items"] = frames["order_items"][
        frames["order_items"]["order_id"].isin(frames["orders"]["order_id"])
    ]
    frames["events"] = frames["events"][
        frames["events"]["order_id"].isna() | frames["events"]["order_id"].isin(frames["orders"]["order_id"])
    ]
    store.write_raw(frames.items(), warehouse_file)
    before = _raw_fingerprint(warehouse_file)
    orders = read_folder(course_data)["orders"].iloc[-5:].reset_index(drop=True)
    orders.attrs["file"] = "orders.csv"
    event = frames["events"].iloc[[0]].assign(event_id=NEW_EVENT, order_id=UNKNOWN_ORDER)
    event = event.reset_index(drop=True)
    event.attrs["file"] = "events.csv"

    with pytest.raises(LoadError) as error:
        store.append_raw([("events", event), ("orders", orders)], warehouse_file)

    assert f"events.csv, line 2: events.order_id '{UNKNOWN_ORDER}' not found in orders.order_id" in str(
        error.value
    )
    assert _raw_fingerprint(warehouse_file) == before
    # the same orders alone, then an event naming one of them, are appended (parents first)
    event = event.assign(order_id=orders["order_id"][0])
    assert store.append_raw([("events", event), ("orders", orders)], warehouse_file) == {
        "orders": 5,
        "events": 1,
    }


def test_append_needs_loaded_raw_data(warehouse_file: Path, tmp_path: Path, course_data: Path) -> None:
    folder = _arrivals(course_data, tmp_path / "day", slice(0, 1))
    with pytest.raises(ValueError, match=r"no raw data at .* to append to"):
        store.append_raw(read_arrivals(folder).items(), warehouse_file)

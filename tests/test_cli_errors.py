"""User errors on the command line: the real `greenery` process exits 2 (arguments argparse
refuses) or 1 (everything else) with one message naming the problem, and no traceback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from greenery.warehouse import store

GREENERY = Path(sys.executable).with_name("greenery")


def _run(warehouse: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GREENERY), *args],
        env={**os.environ, store.ENV_VAR: str(warehouse), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_refused(done: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stderr
    assert message in done.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["generate", "--scale", "1e9"], 2, "argument --scale: invalid int value: '1e9'"),
        (["serve", "--port", "99999"], 2, "argument --port: a port goes from 0 to 65535 (got 99999)"),
        (
            ["replay", "--weeks", "99999999999999999999"],
            1,
            "greenery replay: error: --weeks '99999999999999999999': weeks go from 1 to 520",
        ),
        (
            ["generate", "--scale", "99999999999999999999"],
            1,
            "greenery generate: error: --scale must be a whole number from 1",
        ),
        (["build", "--lookback-days", "1e400"], 1, "--lookback-days must be a number of days from 0 to 3650"),
        (
            ["generate", "--dirty", "--next-days", "1", "--out", "next-day"],
            1,
            "greenery generate: error: --dirty makes a whole warehouse: --next-days continues one",
        ),
        (["build"], 1, "greenery build: error: no raw data at"),
        (["publish"], 1, "greenery publish: error: no warehouse at"),
    ],
)
def test_bad_arguments_and_missing_steps(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    warehouse = tmp_path / "warehouse" / "greenery.duckdb"
    _assert_refused(_run(warehouse, args), code, message)
    assert not warehouse.exists() and not store.raw_path(warehouse).exists()


@pytest.mark.parametrize(
    ("flag", "protocol"),
    [("--port", "HTTP"), ("--flight-port", "Arrow Flight SQL"), ("--pg-port", "Postgres")],
)
def test_a_port_in_use_is_named(course_copy: Path, flag: str, protocol: str) -> None:
    """One line naming the protocol and the port, and what had started is stopped: no thread or
    DuckDB connection left for the exit to trip on (nanobind listed dozens as leaked), and no
    gRPC log line or uvicorn's own error."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        args = ["serve", "--port", port] if flag == "--port" else ["serve", "--port", "0", flag, port]
        done = _run(course_copy, args)
    _assert_refused(
        done, 1, f"greenery serve: error: cannot serve {protocol} on 127.0.0.1:{port}: Address already in use"
    )
    assert "nanobind" not in done.stderr and "add_port" not in done.stderr and "ERROR:" not in done.stderr


def _too_large_integer(folder: Path) -> None:
    path = folder / "order_items.csv"
    lines = path.read_text().splitlines(keepends=True)
    order_id, product_id, _ = lines[1].rstrip("\n").split(",")
    lines[1] = f"{order_id},{product_id},99999999999999999999\n"
    path.write_text("".join(lines))


def _infinite_price(folder: Path) -> None:
    path = folder / "products.csv"
    path.write_text(path.read_text().replace("Pothos,30.5,", "Pothos,inf,", 1))


def _repeated_week(folder: Path) -> None:
    path = folder / "product_inventory_by_week.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([*lines, lines[5]]))


def test_bad_csv_values_name_file_line_and_column(course_data: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(course_data, bad)
    for path in bad.iterdir():
        path.chmod(0o644)
    for corrupt in (_too_large_integer, _infinite_price, _repeated_week):
        corrupt(bad)
    warehouse = tmp_path / "warehouse" / "greenery.duckdb"

    done = _run(warehouse, ["load", "--from-csv", str(bad)])

    _assert_refused(
        done, 1, "greenery load: error: the raw data was not loaded (the warehouse is unchanged):"
    )
    for problem in (
        "order_items.csv, column quantity, line 2: '99999999999999999999' is out of range",
        "products.csv, column price, line 2: 'inf' is not a finite number",
        "product_inventory_by_week.csv, column week+product_id, line 122: duplicate primary key",
    ):
        assert f"\n  {problem}" in done.stderr
    assert not store.raw_path(warehouse).exists()


def test_malformed_duckdb_settings_are_named(course_data: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse" / "greenery.duckdb"
    done = _run(warehouse, ["load", "--from-csv", str(course_data)], **{store.MEMORY_ENV: "lots"})
    _assert_refused(done, 1, f"greenery load: error: DuckDB refused its settings ({store.MEMORY_ENV}='lots'")
    assert not store.raw_path(warehouse).exists()


def test_malformed_duckdb_settings_are_named_by_the_next_days(course_data: Path, tmp_path: Path) -> None:
    """The state reader holds DuckDB to less memory than the environment asks, yet still
    refuses the environment's setting when it is malformed."""
    warehouse = tmp_path / "warehouse" / "greenery.duckdb"
    assert _run(warehouse, ["load", "--from-csv", str(course_data)]).returncode == 0
    out = tmp_path / "next"
    done = _run(warehouse, ["generate", "--next-days", "1", "--out", str(out)], **{store.MEMORY_ENV: "lots"})
    _assert_refused(
        done, 1, f"greenery generate: error: DuckDB refused its settings ({store.MEMORY_ENV}='lots'"
    )
    assert not out.exists()


def test_next_days_continue_the_scale_and_seed_the_warehouse_was_generated_with(tmp_path: Path) -> None:
    """Left out, --scale and --seed are the warehouse's; given otherwise, they are refused
    rather than making days of another shape."""
    warehouse = tmp_path / "warehouse" / "greenery.duckdb"
    assert _run(warehouse, ["generate", "--scale", "2", "--seed", "7"]).returncode == 0
    implied, given = tmp_path / "implied", tmp_path / "given"
    done = _run(warehouse, ["generate", "--next-days", "1", "--out", str(implied)])
    assert done.returncode == 0, done.stderr
    assert "at scale 2 with seed 7:" in done.stdout
    explicit = ["generate", "--next-days", "1", "--scale", "2", "--seed", "7", "--out", str(given)]
    assert _run(warehouse, explicit).returncode == 0
    files = sorted(path.name for path in implied.iterdir())
    assert files == ["events.csv", "order_items.csv", "orders.csv"]
    for name in files:
        assert (implied / name).read_bytes() == (given / name).read_bytes(), name
    other = tmp_path / "other"
    done = _run(warehouse, ["generate", "--next-days", "1", "--scale", "3", "--out", str(other)])
    _assert_refused(
        done,
        1,
        "greenery generate: error: the warehouse was generated at scale 2 with seed 7, and its next days"
        " continue it (asked for scale 3): leave out --scale and --seed, or give the warehouse's",
    )
    assert not other.exists()


def test_next_days_refuse_a_folder_that_is_not_empty(course_data: Path, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse" / "greenery.duckdb"
    assert _run(warehouse, ["load", "--from-csv", str(course_data)]).returncode == 0
    out = tmp_path / "next"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    done = _run(warehouse, ["generate", "--next-days", "1", "--out", str(out)])
    _assert_refused(done, 1, f"greenery generate: error: {out} is not an empty folder")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert not (tmp_path / ".next.tmp").exists()

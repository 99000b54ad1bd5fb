"""Read the seven course tables (and the weekly inventory) from a folder of CSVs, validated.

Everything is read and validated before anything is written: `read_folder` raises a
LoadError naming every problem, so the warehouse only ever receives valid tables. A value is
refused when it is not of its column's kind (an id that is not a uuid included), is required
and empty, is not finite (``inf``), is negative where that cannot be (`schema.NON_NEGATIVE`)
or is a whole number too large to store; so is a key repeated (for the weekly file, a
``(week, product_id)``) or a reference to a row that is not there.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from greenery.data import course
from greenery.data.schema import (
    INTEGER_RANGE,
    INVENTORY_BY_WEEK,
    NON_NEGATIVE,
    REPEATABLE_ROWS,
    TABLES,
    Column,
    ForeignKey,
    Table,
)

MAX_PROBLEMS = 20
UUID_TEXT = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
WEEKLY_FILE = f"{INVENTORY_BY_WEEK.name}.csv"
# The weekly file's own columns (each product's name and price come from products.csv).
WEEKLY_FILE_TABLE = Table(
    INVENTORY_BY_WEEK.name,
    (Column("week", "integer"), Column("product_id", "varchar"), Column("inventory", "integer")),
    ("week", "product_id"),
)
MAX_WEEK = 520  # ten years of weekly states: a larger week is a typo


class LoadError(ValueError):
    """The input folder has problems; each names the file, column and line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:MAX_PROBLEMS]
        more = f"\n  … and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(
            "the raw data was not loaded (the warehouse is unchanged):\n  " + "\n  ".join(shown) + more
        )


def _line(index: int) -> int:
    """CSV line of a data row (line 1 is the header)."""
    return index + 2


def _parse_column(
    values: pd.Series, column: Column, file: str, problems: list[str], *, non_negative: bool = False
) -> pd.Series:
    empty = values == ""
    if not column.nullable:
        for index in values.index[empty][:MAX_PROBLEMS]:
            problems.append(f"{file}, column {column.name}, line {_line(index)}: empty value (required)")
    if column.type == "varchar":
        return values.where(~empty, None)
    refused = pd.Series("", index=values.index)  # why a value of the right kind is refused
    if column.type == "uuid":
        # the raw catalog stores ids as DuckDB's uuid type (schema.DUCKDB_TYPES): a value that
        # is not one is refused here, naming its line, rather than failing the insert
        parsed = values.where(values.str.fullmatch(UUID_TEXT), None)
        kind = "a uuid"
    elif column.type == "timestamp":
        parsed = pd.to_datetime(values.where(~empty), format="ISO8601", utc=True, errors="coerce")
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
        kind = "an ISO-8601 timestamp"
    else:
        parsed, kind = _parse_number(values.where(~empty), column, non_negative, refused)
    bad = parsed.isna() & ~empty
    for index in values.index[bad][:MAX_PROBLEMS]:
        why = refused[index] or f"is not {kind}"
        problems.append(f"{file}, column {column.name}, line {_line(index)}: {values[index]!r} {why}")
    return parsed


def _parse_number(
    values: pd.Series, column: Column, non_negative: bool, refused: pd.Series
) -> tuple[pd.Series, str]:
    """The numbers of a column (NA where not one), and what kind was expected; writes into
    `refused` why a number is still refused (not finite, negative, not whole, too large)."""
    number = pd.to_numeric(values, errors="coerce").astype("float64")
    refused[number.abs() == float("inf")] = "is not a finite number"
    if non_negative:
        refused[(refused == "") & (number < 0)] = f"is negative ({column.name} cannot be)"
    if column.type == "integer":
        low, high = INTEGER_RANGE
        refused[(refused == "") & number.notna() & (number != number.round())] = "is not a whole number"
        refused[(refused == "") & ((number < low) | (number > high))] = (
            f"is out of range (whole numbers go from {low:,} to {high:,})"
        )
    number = number.where(refused == "")
    if column.type == "integer":
        return number.astype("Int64"), "a whole number"
    return number, "a number"


def _read_table(folder: Path, table: Table, problems: list[str]) -> pd.DataFrame | None:
    file = f"{table.name}.csv"
    path = folder / file
    if not path.is_file():
        problems.append(f"{file}: file missing in {folder}")
        return None
    try:
        text = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        problems.append(f"{file}: not a readable CSV ({exc})")
        return None
    missing = [c for c in table.column_names if c not in text.columns]
    if missing:
        problems.append(f"{file}: missing column(s) {', '.join(missing)} (has: {', '.join(text.columns)})")
        return None
    return pd.DataFrame(
        {
            c.name: _parse_column(
                text[c.name].str.strip(), c, file, problems, non_negative=(table.name, c.name) in NON_NEGATIVE
            )
            for c in table.columns
        }
    )


def _check_primary_key(table: Table, frame: pd.DataFrame, problems: list[str]) -> None:
    key = list(table.primary_key)
    dup = frame.duplicated(key, keep="first")
    if table.name in REPEATABLE_ROWS:  # a row delivered twice, exactly alike, is kept (staging dedupes)
        dup &= ~frame.duplicated(keep="first")
    for index in frame.index[dup][:MAX_PROBLEMS]:
        value = ", ".join(str(frame.at[index, k]) for k in key)
        problems.append(
            f"{table.name}.csv, column {'+'.join(key)}, line {_line(index)}: duplicate primary key {value!r}"
        )


def _check_foreign_keys(table: Table, frames: dict[str, pd.DataFrame], problems: list[str]) -> None:
    frame = frames[table.name]
    for fk in table.foreign_keys:
        if fk.table not in frames or not fk.enforced:
            continue
        values = frame[fk.column]
        orphan = values.notna() & ~values.isin(frames[fk.table][fk.ref_column])
        for index in frame.index[orphan][:MAX_PROBLEMS]:
            problems.append(
                f"{table.name}.csv, column {fk.column}, line {_line(index)}: "
                f"{values[index]!r} not found in {fk.table}.{fk.ref_column}"
            )


def read_folder(folder: Path) -> dict[str, pd.DataFrame]:
    """Every raw table, validated: the seven course tables and the weekly inventory.

    Raises LoadError listing every problem found.
    """
    if not folder.is_dir():
        raise LoadError([f"{folder}: not a folder"])
    problems: list[str] = []
    frames: dict[str, pd.DataFrame] = {}
    for table in TABLES:
        frame = _read_table(folder, table, problems)
        if frame is not None:
            frames[table.name] = frame
            _check_primary_key(table, frame, problems)
    for table in TABLES:
        if table.name in frames:
            _check_foreign_keys(table, frames, problems)
    weekly = _read_weekly_file(folder, frames, problems)
    if problems:
        raise LoadError(problems)
    frames[INVENTORY_BY_WEEK.name] = _weekly_inventory(weekly, frames)
    return frames


def read_arrivals(folder: Path) -> dict[str, pd.DataFrame]:
    """New rows for some of the seven course tables (a day's arrivals), validated on their own.

    Each ``<table>.csv`` present is read and checked like `read_folder` does (columns, values,
    primary keys repeated within the file); at least one must be present. References to other
    tables are checked when the rows are appended (`store.append_raw`), against what is loaded.
    Each frame's ``attrs["file"]`` names its file, so later problems can name file and line.
    """
    if not folder.is_dir():
        raise LoadError([f"{folder}: not a folder"])
    present = [t for t in TABLES if (folder / f"{t.name}.csv").is_file()]
    if not present:
        names = ", ".join(f"{t.name}.csv" for t in TABLES)
        raise LoadError([f"{folder}: no table to append (expected one or more of {names})"])
    problems: list[str] = []
    frames: dict[str, pd.DataFrame] = {}
    for table in present:
        frame = _read_table(folder, table, problems)
        if frame is not None:
            _check_primary_key(table, frame, problems)
            frame.attrs["file"] = f"{table.name}.csv"
            frames[table.name] = frame
    if problems:
        raise LoadError(problems)
    return frames


def _read_weekly_file(
    folder: Path, frames: dict[str, pd.DataFrame], problems: list[str]
) -> pd.DataFrame | None:
    """The folder's weekly file (None without one), validated like a course table: values,
    weeks from 1 to MAX_WEEK, ``(week, product_id)`` once each, products that products.csv has."""
    if not (folder / WEEKLY_FILE).is_file():
        return None
    weekly = _read_table(folder, WEEKLY_FILE_TABLE, problems)
    if weekly is None:
        return None
    _check_primary_key(WEEKLY_FILE_TABLE, weekly, problems)
    out_of_range = weekly["week"].notna() & ~weekly["week"].between(1, MAX_WEEK)
    for index in weekly.index[out_of_range.fillna(False)][:MAX_PROBLEMS]:
        problems.append(
            f"{WEEKLY_FILE}, column week, line {_line(index)}: {weekly.at[index, 'week']} is not a week"
            f" from 1 to {MAX_WEEK}"
        )
    _check_foreign_keys(
        Table(WEEKLY_FILE_TABLE.name, (), (), (ForeignKey("product_id", "products", "product_id"),)),
        {**frames, WEEKLY_FILE_TABLE.name: weekly},
        problems,
    )
    return weekly


def _weekly_inventory(weekly: pd.DataFrame | None, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Weekly product states for `greenery replay`.

    From the folder's weekly file when it has one (the course export does), else the
    course's own facts when the products are the course's, else products.csv as week 1.
    Week 1 is recorded the day after the last order, each next week 7 days later.
    """
    products = frames["products"]
    week_1_at = frames["orders"]["created_at"].max().normalize() + pd.Timedelta(days=1)
    if weekly is not None:
        weekly = weekly.merge(products[["product_id", "name", "price"]], on="product_id")
    elif set(products["product_id"]) == {p[0] for p in course.PRODUCTS}:
        return course.inventory_by_week(week_1_at)
    else:
        weekly = products.assign(week=1)
    days = (weekly["week"].astype("int64") - 1) * 7
    weekly["recorded_at"] = week_1_at + pd.to_timedelta(days, unit="D")
    return weekly.astype({"recorded_at": "datetime64[us]"})

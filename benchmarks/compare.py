"""Two warehouses built from the same raw data, compared table by table.

`python -m benchmarks.scale --check-incremental` builds a copy of the warehouse that daily
incremental builds made with one full refresh of the same raw data, and compares the two here:
every base table of the schemas that dbt and the exports write, as multisets of rows (no
order), without `built_at` (when the build wrote a row, which differs by design). The
snapshot's run log is left out: it has a row per snapshot run, and a full refresh is one more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from greenery.warehouse import store
from greenery.warehouse.replay import SNAPSHOT_RUNS

SCHEMAS = ("staging", "intermediate", "marts", "snapshots", "exports")
LEFT_OUT = {SNAPSHOT_RUNS}
BUILD_TIME = "built_at"
INCREMENTAL, FULL_REFRESH = "incremental", "full_refresh"  # the two warehouses' catalog names


@dataclass(frozen=True)
class TableDiff:
    relation: str  # schema.table
    rows: int  # in the incremental warehouse
    only_incremental: int  # rows (counted with repeats) the full refresh does not have
    only_full_refresh: int
    same_columns: bool  # both have the table, with the same columns in the same order (else
    # the rows are not compared)

    @property
    def identical(self) -> bool:
        return self.same_columns and self.only_incremental == self.only_full_refresh == 0


def compare_warehouses(incremental: Path, full_refresh: Path) -> list[TableDiff]:
    """Each table of `incremental` (and any only `full_refresh` has) against the other's."""
    con = store.open_duckdb(warehouse_file=full_refresh)  # spills beside the full refresh
    try:
        con.execute(f"attach '{incremental}' as {INCREMENTAL} (read_only)")
        con.execute(f"attach '{full_refresh}' as {FULL_REFRESH} (read_only)")
        columns = {catalog: _columns(con, catalog) for catalog in (INCREMENTAL, FULL_REFRESH)}
        diffs = []
        for relation in sorted(columns[INCREMENTAL].keys() | columns[FULL_REFRESH].keys()):
            listed_columns = columns[INCREMENTAL].get(relation)
            if listed_columns is None or listed_columns != columns[FULL_REFRESH].get(relation):
                rows = _count(con, _name(INCREMENTAL, relation)) if listed_columns is not None else 0
                diffs.append(TableDiff(relation, rows, 0, 0, same_columns=False))
                continue
            listed = ", ".join(f'"{name}"' for name in listed_columns)
            one, other = (
                f"select {listed} from {_name(catalog, relation)}" for catalog in (INCREMENTAL, FULL_REFRESH)
            )
            diffs.append(
                TableDiff(
                    relation,
                    _count(con, _name(INCREMENTAL, relation)),
                    _count(con, f"({one} except all {other})"),
                    _count(con, f"({other} except all {one})"),
                    same_columns=True,
                )
            )
        return diffs
    finally:
        con.close()


def _columns(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, list[str]]:
    """schema.table -> its columns in order, but BUILD_TIME, for the compared tables of `catalog`."""
    schemas = ", ".join(f"'{schema}'" for schema in SCHEMAS)
    rows = con.execute(
        "select c.table_schema, c.table_name, c.column_name"
        " from information_schema.columns as c join information_schema.tables as t"
        " using (table_catalog, table_schema, table_name)"
        f" where c.table_catalog = ? and t.table_type = 'BASE TABLE' and c.table_schema in ({schemas})"
        " order by c.table_schema, c.table_name, c.ordinal_position",
        [catalog],
    ).fetchall()
    found: dict[str, list[str]] = {}
    for schema, table, column in rows:
        relation = f"{schema}.{table}"
        if relation not in LEFT_OUT:
            found.setdefault(relation, [])
            if column != BUILD_TIME:
                found[relation].append(column)
    return found


def _name(catalog: str, relation: str) -> str:
    schema, table = relation.split(".")
    return f'{catalog}."{schema}"."{table}"'


def _count(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    return con.execute(f"select count(*) from {relation}").fetchone()[0]

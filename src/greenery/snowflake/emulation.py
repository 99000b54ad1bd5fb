"""The project on an emulated Snowflake: the `snowflake` target, in-process, against fakesnow.

Production runs on Snowflake, which cannot be reached from development or CI. This harness runs
the real dbt-snowflake adapter with the real `snowflake` profile, but `fakesnow` answers instead
of Snowflake (it executes Snowflake SQL on DuckDB). `run_pipeline` does what production does:
load the raw tables into `raw.public`, replay the weekly product snapshots, `dbt build` with all
tests, then read the answers from the marts.

Strict: fakesnow runs on DuckDB, so it would happily execute DuckDB-only SQL that Snowflake
rejects. Every statement dbt sends therefore goes through `greenery.snowflake.dialect.check_sql` first and
is refused the way Snowflake refuses it ("SQL compilation error: Unknown function …").

Credentials: inside `emulated_snowflake()` the SNOWFLAKE_* variables are dummy values (set for
its duration, then restored); nothing leaves the process.

fakesnow 0.12 lacks a few things dbt-snowflake 1.12 uses; each has the smallest workaround
here, in the harness only (the project and the real Snowflake path are unchanged):
see `FAKESNOW_NOPS`, `_for_fakesnow` (with `_CLUSTERED_CTAS`: the clustering keys) and
`create_databases`.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import fakesnow
import pandas as pd
import snowflake.connector
import snowflake.connector.errors
import sqlglot
from dbt.cli.main import dbtRunner
from fakesnow.cursor import FakeSnowflakeCursor
from fakesnow.transforms import stage as fakesnow_stage
from snowflake.connector import pandas_tools
from sqlglot import exp

from greenery.data.load import LoadError, read_folder
from greenery.data.schema import INVENTORY_BY_WEEK, TABLES, Table
from greenery.snowflake.dialect import check_sql, check_target, sql_files
from greenery.warehouse.store import PROJECT_DIR

# fakesnow makes a folder for its stages when imported, and never removes it: one per process
atexit.register(shutil.rmtree, fakesnow_stage.LOCAL_BUCKET_PATH, ignore_errors=True)

TARGET = "snowflake"
RAW_DATABASE = "raw"
RAW_SCHEMA = "public"
MARTS_SCHEMA = "marts"
DEFAULT_WORK_DIR = PROJECT_DIR / "target" / "snowflake-emulated"
FUNNEL_STEPS = ("page_view", "add_to_cart", "checkout")

# What profiles.yml reads for the `snowflake` target: dummies, never real secrets.
DUMMY_CREDENTIALS: dict[str, str] = {
    "SNOWFLAKE_ACCOUNT": "fakesnow",
    "SNOWFLAKE_USER": "fakesnow",
    "SNOWFLAKE_PASSWORD": "not-a-secret",
    "SNOWFLAKE_PRIVATE_KEY_PATH": "",
    "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "",
    "SNOWFLAKE_ROLE": "transformer",
    "SNOWFLAKE_WAREHOUSE": "transforming",
    "SNOWFLAKE_DATABASE": "analytics",
    "SNOWFLAKE_SCHEMA": "dbt_greenery",
}

# The raw tables as Snowflake types (the course's `real` columns are FLOAT there).
SNOWFLAKE_TYPES: dict[str, str] = {
    "varchar": "VARCHAR",
    "uuid": "VARCHAR",
    "integer": "INTEGER",
    "real": "FLOAT",
    "timestamp": "TIMESTAMP_NTZ",
}

# fakesnow gaps answered with "success" without running the statement (fakesnow's nop_regexes,
# matched at the start of the statement, case-insensitive):
FAKESNOW_NOPS: tuple[str, ...] = (
    # BEGIN/COMMIT: dbt-snowflake wraps the snapshot MERGE in an explicit transaction, and
    # fakesnow's MERGE emulation writes bookkeeping to a second DuckDB database, which DuckDB
    # forbids within one transaction. Without them every statement autocommits.
    r"\s*(begin|commit)\s*(;|/\*|$)",
    # persist_docs, table comments: fakesnow copies `comment on table … is $$…$$` into SQL
    # unescaped, so a description with an apostrophe ("the user's state") breaks it.
    r"\s*comment\s+on\s",
    # persist_docs, column comments of tables: fakesnow parses only one column per
    # `alter table … alter "A" comment $$…$$, "B" comment $$…$$`.
    r'\s*alter\s+table\s+\S+\s+alter\s+"[^"]+"\s+comment\s',
    # cluster_by (the large facts on Snowflake): fakesnow has no clustering keys to set.
    r"\s*alter\s+table\s+\S+\s+(cluster\s+by|resume\s+recluster)\b",
)

# fakesnow lacks TEMPORARY tables and views with a database.schema-qualified name (DuckDB keeps
# temporary objects in its own catalog); dbt-snowflake creates the snapshot's staging table and
# unit-test inputs that way. They become ordinary tables, replaced on the next run.
_QUALIFIED_TEMPORARY = re.compile(
    r"^(\s*create\s+(?:or\s+replace\s+)?)temporary\s+(?=(?:table|view)\s+\S+\.)", re.IGNORECASE
)
_MERGE = re.compile(r"\s*merge\s+into\s", re.IGNORECASE)
# With cluster_by, dbt-snowflake's CTAS sorts by the clustering key: `as (select * from (<the
# model>) order by (<keys>))`; fakesnow's translation of some models fails inside that wrapper
# (datediff in fct_sessions), so the emulation runs the model unwrapped (the order of a table's
# rows means nothing to it). The dialect check still reads the statement as dbt sent it.
_CLUSTERED_CTAS = re.compile(
    r"(?P<head>\bas\s*\()\s*select\s+\*\s+from\s+\(\s*(?P<model>.*)\)\s*order\s+by\s+\("
    r"[^()]*\)\s*\)",
    re.IGNORECASE | re.DOTALL,
)
_NODE_ID = re.compile(r'"node_id":\s*"([^"]+)"')


class EmulationError(RuntimeError):
    """A dbt command, or a check of its answers, failed on the emulated Snowflake."""


def _qualify_merge_insert_values(command: str) -> str:
    """fakesnow's MERGE cannot resolve the unqualified columns of `insert (…) values (a, b)` that
    the target has too (dbt's snapshot merge); Snowflake reads them from the source: qualify them."""
    merge = sqlglot.parse_one(command, read="snowflake")
    if not isinstance(merge, exp.Merge):
        return command
    source = merge.args["using"].alias_or_name
    whens = merge.args.get("whens")
    for when in whens.expressions if isinstance(whens, exp.Expr) else whens or []:
        then = when.args.get("then")
        if isinstance(then, exp.Insert) and isinstance(then.expression, exp.Tuple):
            for column in then.expression.expressions:
                if isinstance(column, exp.Column) and not column.table:
                    column.set("table", exp.to_identifier(source))
    return merge.sql(dialect="snowflake")


def _for_fakesnow(command: str) -> str:
    """The statement as fakesnow can run it (see _QUALIFIED_TEMPORARY, _CLUSTERED_CTAS and the MERGE note)."""
    command = _QUALIFIED_TEMPORARY.sub(r"\1", command)
    if command.lstrip().lower().startswith("create"):
        command = _CLUSTERED_CTAS.sub(r"\g<head>\g<model>)", command, count=1)
    if _MERGE.match(command):
        command = _qualify_merge_insert_values(command)
    return command


def _source(command: str) -> str:
    node = _NODE_ID.search(command)
    return node.group(1) if node else "statement"


@contextmanager
def dummy_credentials() -> Iterator[None]:
    """Set DUMMY_CREDENTIALS in the environment for the duration; restore the previous values."""
    saved = {name: os.environ.get(name) for name in DUMMY_CREDENTIALS}
    os.environ.update(DUMMY_CREDENTIALS)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def emulated_snowflake(db_path: Path | None = None, *, strict: bool = True) -> Iterator[list[str]]:
    """Patch the Snowflake connector with fakesnow, with dummy credentials, for the duration.

    ``db_path``: a folder where fakesnow keeps each database as ``<NAME>.db`` (DuckDB files, left
    behind for inspection); None keeps everything in memory. ``strict``: refuse statements that
    Snowflake would reject (see the module doc). Yields the statements accepted so far.
    """
    statements: list[str] = []
    execute = FakeSnowflakeCursor.execute

    def checked_execute(self: FakeSnowflakeCursor, command: str, *args: Any, **kwargs: Any) -> Any:
        if strict and (problems := check_sql(command, _source(command))):
            raise snowflake.connector.errors.ProgrammingError(
                msg="SQL compilation error:\n" + "\n".join(problems), errno=2140, sqlstate="42601"
            )
        statements.append(command)
        return execute(self, _for_fakesnow(command), *args, **kwargs)

    if db_path is not None:
        db_path.mkdir(parents=True, exist_ok=True)
    sqlglot_log = logging.getLogger("sqlglot")
    level = sqlglot_log.level
    sqlglot_log.setLevel(logging.ERROR)  # "falling back to parsing as a Command" for SHOW …
    try:
        with (
            dummy_credentials(),
            warnings.catch_warnings(),
            mock.patch.object(FakeSnowflakeCursor, "execute", checked_execute),
            fakesnow.patch(db_path=db_path, nop_regexes=list(FAKESNOW_NOPS)),
        ):
            # fakesnow's own pandas/arrow deprecation and copy warnings: not ours to fix
            warnings.filterwarnings("ignore", module=r"fakesnow\.")
            yield statements
    finally:
        sqlglot_log.setLevel(level)


def connect(database: str = RAW_DATABASE, schema: str = RAW_SCHEMA) -> Any:
    """A connection to the emulated Snowflake (only inside ``emulated_snowflake()``)."""
    env = os.environ
    return snowflake.connector.connect(
        account=env["SNOWFLAKE_ACCOUNT"],
        user=env["SNOWFLAKE_USER"],
        password=env["SNOWFLAKE_PASSWORD"],
        database=database,
        schema=schema,
    )


def create_databases(con: Any) -> None:
    """raw.public and the target's database and schema.

    The target's are created here, once, because fakesnow creates a database on connect without
    a lock: dbt's 8 threads connecting at once fail with "database … already exists".
    """
    database, schema = os.environ["SNOWFLAKE_DATABASE"], os.environ["SNOWFLAKE_SCHEMA"]
    cur = con.cursor()
    for sql in (
        f"create database if not exists {RAW_DATABASE}",
        f"create schema if not exists {RAW_DATABASE}.{RAW_SCHEMA}",
        f"create database if not exists {database}",
        f"create schema if not exists {database}.{schema}",
    ):
        cur.execute(sql)


def _create_sql(table: Table) -> str:
    columns = ", ".join(
        f"{c.name} {SNOWFLAKE_TYPES[c.type]}{'' if c.nullable else ' not null'}" for c in table.columns
    )
    return f"create or replace table {RAW_DATABASE}.{RAW_SCHEMA}.{table.name} ({columns})"


def _write(con: Any, table: str, rows: pd.DataFrame) -> None:
    # looked up at each call: what fakesnow patches is the module's attribute
    pandas_tools.write_pandas(
        con,
        rows.reset_index(drop=True),
        table,
        database=RAW_DATABASE,
        schema=RAW_SCHEMA,
        quote_identifiers=False,
    )


def load_raw(con: Any, frames: dict[str, pd.DataFrame]) -> None:
    """Create the seven course tables in raw.public with Snowflake types and load their rows."""
    for table in TABLES:
        con.cursor().execute(_create_sql(table))
        _write(con, table.name, frames[table.name][table.column_names])


def replace_products(con: Any, rows: pd.DataFrame) -> None:
    """Overwrite raw.public.products with one week's product states."""
    con.cursor().execute(f"truncate table {RAW_DATABASE}.{RAW_SCHEMA}.products")
    _write(con, "products", rows[["product_id", "name", "price", "inventory"]])


def run_dbt(args: Sequence[str], *, project_dir: Path, work_dir: Path, quiet: bool = True) -> None:
    """One dbt command on the `snowflake` target, in-process (inside ``emulated_snowflake()``).

    dbt writes its target/ and logs/ under ``work_dir``, never the project's own.
    """
    flags = [
        "--target", TARGET,
        "--project-dir", str(project_dir),
        "--profiles-dir", str(project_dir),
        "--target-path", str(work_dir / "target"),
        "--log-path", str(work_dir / "logs"),
    ]  # fmt: skip
    result = dbtRunner().invoke([*(["--quiet"] if quiet else []), *args, *flags])
    if result.success:
        return
    failures = [str(result.exception)] if result.exception else []
    for node in getattr(result.result, "results", None) or []:
        if str(node.status) in {"error", "fail", "runtime error"}:
            failures.append(f"{node.node.unique_id}: {' '.join(str(node.message).split())}")
    raise EmulationError(f"`dbt {' '.join(args)}` failed on the emulated Snowflake\n" + "\n".join(failures))


@dataclass(frozen=True)
class Answers:
    """The answers compared across warehouses."""

    # sessions with a page view, an add to cart, a checkout
    funnel: tuple[int, int, int]
    # (product, inventory before, inventory after) for every change the last week recorded
    last_week_changes: tuple[tuple[str, int, int], ...]


def read_answers(con: Any, change_date: pd.Timestamp) -> Answers:
    """The answers from the marts of the emulated Snowflake."""
    marts = f"{os.environ['SNOWFLAKE_DATABASE']}.{MARTS_SCHEMA}"
    cur = con.cursor()
    viewed, added, checked_out = cur.execute(
        "select count_if(has_page_view), count_if(has_add_to_cart), count_if(has_checkout)"
        f" from {marts}.fct_sessions"
    ).fetchone()
    changes = cur.execute(
        f"select product_name, previous_inventory, new_inventory from {marts}.fct_inventory_changes"
        f" where change_date = '{change_date:%Y-%m-%d}' order by product_name"
    ).fetchall()
    return Answers(
        (int(viewed), int(added), int(checked_out)),
        tuple((str(name), int(before), int(after)) for name, before, after in changes),
    )


def expected_answers(frames: dict[str, pd.DataFrame], weekly: pd.DataFrame) -> Answers:
    """The same answers computed with pandas from the raw rows and the weekly states."""
    steps = frames["events"].groupby("session_id")["event_type"].agg(set)
    viewed, added, checked_out = (sum(step in types for types in steps) for step in FUNNEL_STEPS)
    by_week = weekly.pivot_table(index="name", columns="week", values="inventory")
    before, after = by_week.columns[-2], by_week.columns[-1]
    changed = by_week[by_week[before] != by_week[after]].sort_index()
    return Answers(
        (viewed, added, checked_out),
        tuple((str(name), int(row[before]), int(row[after])) for name, row in changed.iterrows()),
    )


@dataclass(frozen=True)
class EmulatedRun:
    answers: Answers
    expected: Answers
    # statements dbt and the loader sent, each accepted by the dialect check
    statements: int
    seconds: float
    target_path: Path
    # target/ of the incremental build that follows the first one
    incremental_target_path: Path


def run_pipeline(
    course_folder: Path, work_dir: Path, *, project_dir: Path = PROJECT_DIR, quiet: bool = True
) -> EmulatedRun:
    """Load the course CSVs into the emulated raw.public, replay weeks 1–4, `dbt build`, build
    the incremental models again as a daily build does (nothing new: it must change nothing),
    answer.

    ``work_dir`` receives dbt's target/ and logs/ (those of the incremental build under
    incremental/) and the emulated databases (fakesnow/, DuckDB files, replaced on every run).
    """
    start = time.perf_counter()
    frames = read_folder(course_folder)
    weekly = frames[INVENTORY_BY_WEEK.name]
    db_path = work_dir / "fakesnow"
    shutil.rmtree(db_path, ignore_errors=True)
    with emulated_snowflake(db_path) as statements:
        con = connect()
        create_databases(con)
        load_raw(con, frames)
        for _, rows in weekly.groupby("week"):
            recorded_at = pd.Timestamp(rows["recorded_at"].iloc[0])
            replace_products(con, rows)
            snapshot_at = json.dumps({"snapshot_at": recorded_at.isoformat(sep=" ")})
            run_dbt(
                ["snapshot", "--vars", snapshot_at], project_dir=project_dir, work_dir=work_dir, quiet=quiet
            )
        # pinned like the replay clock does on DuckDB: the build's own snapshot run stays on the last week
        run_dbt(["build", "--vars", snapshot_at], project_dir=project_dir, work_dir=work_dir, quiet=quiet)
        incremental = ["build", "--select", "config.materialized:incremental", "--vars", snapshot_at]
        run_dbt(incremental, project_dir=project_dir, work_dir=work_dir / "incremental", quiet=quiet)
        answers = read_answers(con, recorded_at.normalize())
        con.close()
        executed = len(statements)
    return EmulatedRun(
        answers,
        expected_answers(frames, weekly),
        executed,
        time.perf_counter() - start,
        work_dir / "target",
        work_dir / "incremental" / "target",
    )


def compile_and_check(project_dir: Path, work_dir: Path) -> tuple[int, list[str]]:
    """`dbt compile --target snowflake` (under the emulation, for introspection) and check it all.

    Returns the number of files checked and the problems found.
    """
    target_path = work_dir / "target"
    with emulated_snowflake():
        create_databases(connect())
        run_dbt(["compile"], project_dir=project_dir, work_dir=work_dir)
    return len(sql_files(target_path)), check_target(target_path)


def _pipeline(args: argparse.Namespace) -> int:
    try:
        run = run_pipeline(args.course_data, args.work_dir.resolve(), quiet=not args.verbose)
    except (EmulationError, LoadError) as error:
        print(error, file=sys.stderr)
        return 1
    viewed, added, checked_out = run.answers.funnel
    print(f"emulated Snowflake: raw loaded, weeks 1–4 snapshotted, dbt build passed ({run.seconds:.1f} s)")
    print(f"  {run.statements} statements, all accepted by the Snowflake dialect check")
    print(f"  funnel (fct_sessions): {viewed} viewed, {added} added to cart, {checked_out} checked out")
    print("  inventory changes of the last week (fct_inventory_changes):")
    for name, before, after in run.answers.last_week_changes:
        print(f"    {name:<18} {before:>3} → {after:>3}")
    if run.answers != run.expected:
        print(f"MISMATCH: expected from the raw data {run.expected}", file=sys.stderr)
        return 1
    print(f"  same as computed from the raw data; dbt artifacts in {run.target_path}")
    return 0


def _dialect(args: argparse.Namespace) -> int:
    work_dir = args.work_dir or PROJECT_DIR / "target" / "snowflake-dialect"
    checked, problems = compile_and_check(args.project_dir.resolve(), work_dir.resolve())
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"dialect check: {checked} compiled files, {len(problems)} problem(s)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """`pipeline`: the whole project on emulated Snowflake; `dialect`: compile and check the SQL."""
    default_data = os.environ.get("GREENERY_COURSE_DATA") or str(
        PROJECT_DIR.parent / "shared" / "greenery-course-data"
    )
    parser = argparse.ArgumentParser(description="The project on the `snowflake` target, against fakesnow.")
    sub = parser.add_subparsers(dest="command", required=True)
    pipeline = sub.add_parser("pipeline", help="load, replay weeks 1–4, dbt build, check the answers")
    pipeline.add_argument("--course-data", type=Path, default=Path(default_data))
    pipeline.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    pipeline.add_argument("--verbose", action="store_true", help="show dbt's output")
    pipeline.set_defaults(func=_pipeline)
    dialect = sub.add_parser("dialect", help="dbt compile for Snowflake and check every file's SQL")
    dialect.add_argument("--project-dir", type=Path, default=PROJECT_DIR)
    dialect.add_argument("--work-dir", type=Path, default=None)
    dialect.set_defaults(func=_dialect)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

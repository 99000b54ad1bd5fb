"""The embedded DuckDB warehouse: where it lives and how to open it.

Layout (one folder):
- ``greenery.duckdb`` (path from ``GREENERY_WAREHOUSE``): what dbt builds (staging, marts,
  snapshots).
- ``raw.duckdb`` beside it, attached as catalog ``raw``: the source tables at
  ``raw.public.<table>``, the names the course used in Snowflake, so the dbt sources are
  identical on both targets.

The raw catalog is written whole into a temporary file and swapped in with an atomic
rename, so a failed load leaves the previous raw data untouched. Daily arrivals are appended
to it in one transaction (`append_raw`), all or nothing.
"""

from __future__ import annotations

import os
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import closing, contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from greenery.data.generate import Generation
from greenery.data.load import MAX_PROBLEMS, LoadError
from greenery.data.schema import INVENTORY_BY_WEEK, TABLES, Table
from greenery.warehouse.lock import exclusive, move_into_place, remove_leftovers

ENV_VAR = "GREENERY_WAREHOUSE"
# The repository root: dbt_project.yml and profiles.yml live there.
PROJECT_DIR = Path(__file__).resolve().parents[3]
DEFAULT_PATH = PROJECT_DIR / "warehouse" / "greenery.duckdb"
OUTPUT_DIR = PROJECT_DIR / "output"  # what a run writes for people to look at (reports, export files)
RAW_FILE = "raw.duckdb"
RAW_CATALOG = "raw"
RAW_SCHEMA = "public"
MEMORY_ENV, DEFAULT_MEMORY = "GREENERY_DUCKDB_MEMORY", "3GB"
THREADS_ENV = "GREENERY_DUCKDB_THREADS"
SPILL_DIR = ".duckdb-spill"  # beside the warehouse: where DuckDB writes what exceeds its memory limit
REPLAY_SCHEMA = "replay"
REPLAY_CLOCK = f"{REPLAY_SCHEMA}.clock"  # the time raw products describe, set by the replay
# One row: the id of the load that wrote this raw catalog whole (appends keep it), so a build
# knows when the raw data was replaced under its incremental models; and, when the data was
# generated, the scale and seed its next days (`greenery generate --next-days`) continue.
RAW_LOAD = f"{REPLAY_SCHEMA}.raw_load"
# Every table of the raw catalog and the schema it lives in.
RAW_TABLES: dict[str, tuple[str, Table]] = {
    **{t.name: (RAW_SCHEMA, t) for t in TABLES},
    INVENTORY_BY_WEEK.name: (REPLAY_SCHEMA, INVENTORY_BY_WEEK),
}


def resolve(warehouse_file: Path | None = None) -> Path:
    """The warehouse file: the one given, else ``$GREENERY_WAREHOUSE``, else ``warehouse/greenery.duckdb``."""
    return Path(warehouse_file or os.environ.get(ENV_VAR) or DEFAULT_PATH).resolve()


def duckdb_settings(warehouse_file: Path | None = None) -> dict[str, str]:
    """What every DuckDB the project opens is held to: a memory limit (spilling beyond it to a
    folder beside the warehouse) and a thread count, from the environment or this machine.

    DuckDB's own default is 80 % of RAM, which one large build can take whole.
    """
    return {
        "memory_limit": os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY,
        "threads": os.environ.get(THREADS_ENV) or str(os.cpu_count() or 1),
        "temp_directory": str(resolve(warehouse_file).parent / SPILL_DIR),
    }


def open_duckdb(
    database: Path | str = ":memory:",
    *,
    read_only: bool = False,
    warehouse_file: Path | None = None,
    **overrides: str,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection under `duckdb_settings` (the spill folder of `warehouse_file`'s
    warehouse), any of them replaced by `overrides`."""
    settings = duckdb_settings(warehouse_file) | overrides
    try:
        return duckdb.connect(str(database), read_only=read_only, config=settings)
    except (duckdb.ParserException, duckdb.SyntaxException, duckdb.InvalidInputException) as exc:
        # only the settings can be malformed here: they come from the environment
        raise ValueError(
            f"DuckDB refused its settings ({MEMORY_ENV}={settings['memory_limit']!r},"
            f" {THREADS_ENV}={settings['threads']!r}): {exc}"
        ) from None


def raw_path(warehouse_file: Path | None = None) -> Path:
    return resolve(warehouse_file).with_name(RAW_FILE)


def connect(warehouse_file: Path | None = None, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse with the raw catalog attached as ``raw``."""
    path = resolve(warehouse_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = open_duckdb(path, read_only=read_only, warehouse_file=path)
    raw = raw_path(path)
    if raw.exists():
        mode = " (READ_ONLY)" if read_only else ""
        con.execute(f"ATTACH '{raw}' AS {RAW_CATALOG}{mode}")
    return con


@contextmanager
def _building_raw(
    warehouse_file: Path | None, generation: Generation | None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a fresh raw catalog that replaces the current one on success only.

    Under the warehouse lock, which also makes it safe to remove the temporary catalogs (and
    their WALs) of loads killed before.
    """
    with exclusive(resolve(warehouse_file), "load"):
        final = raw_path(warehouse_file)
        remove_leftovers(final.parent, f".{final.name}.*.tmp*")
        yield from _fresh_raw_file(final, warehouse_file, generation)


def _fresh_raw_file(
    final: Path, warehouse_file: Path | None, generation: Generation | None
) -> Iterator[duckdb.DuckDBPyConnection]:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    con = open_duckdb(tmp, warehouse_file=warehouse_file)
    try:
        con.execute(f"CREATE SCHEMA {RAW_SCHEMA}")
        con.execute(f"CREATE SCHEMA {REPLAY_SCHEMA}")
        for schema, table in RAW_TABLES.values():
            con.execute(table.create_sql(f"{schema}.{table.name}"))
        columns = "load_id VARCHAR NOT NULL, generated_scale INTEGER, generated_seed BIGINT"
        con.execute(f"CREATE TABLE {RAW_LOAD} ({columns})")
        made = [generation.scale, generation.seed] if generation else [None, None]
        con.execute(f"INSERT INTO {RAW_LOAD} VALUES (?, ?, ?)", [uuid.uuid4().hex, *made])
        yield con
        con.execute("CHECKPOINT")
        con.close()
        move_into_place(tmp, final)
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise


Chunk = pd.DataFrame | pa.Table
ROW_GROUP_ROWS = 122_880  # DuckDB's row group
WRITE_BATCH_ROWS = 2 * ROW_GROUP_ROWS  # rows of one table written per INSERT: whole row groups,
# which DuckDB compresses and writes out as they come, where a part-filled group would be
# compressed again with the next batch's rows (scale 2000's raw tables: 13.5 CPU s against 28)
WRITE_MEMORY = "128MB"  # what the raw writer's DuckDB may hold: it only appends, the rest spills
# (`greenery generate --scale 10000`: 758 MiB at most with it, 899 with 256MB, in the same time)
WRITE_THREADS = 1  # one DuckDB thread per INSERT fills whole row groups (two split each batch
# into part-filled ones)
WRITERS = 2  # connections appending batches at once, beside the generator's thread: compressing
# the strings took one writer a whole core while the generator needed part of the other
# (`greenery generate --scale 10000`, alternating: 142.4 and 149.0 s, at most 816 MiB, against
# 198.4 and 190.3 s with one writer and the generator before; docs/reflection.md, run w)
PREFETCH = 6  # chunks made ahead by the producer thread while DuckDB writes (two blocks of orders,
# order items and events): fewer left the writer waiting for the generator 4.2 of 18.4 s


def _prefetched(items: Iterable[tuple[str, Chunk]]) -> Iterator[tuple[str, Chunk]]:
    """`items`, produced in a background thread at most PREFETCH ahead (the generator's numpy
    and Arrow work and DuckDB's writing both release the GIL, so they overlap)."""
    done = object()
    ahead: queue.Queue[object] = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Queue `item` unless the consumer has stopped; whether it was queued."""
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(done)
        except BaseException as exc:  # re-raised in the consumer
            offer(exc)

    thread = threading.Thread(target=produce, name="raw-producer", daemon=True)
    thread.start()
    try:
        while (item := ahead.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def _batched(chunks: Iterable[tuple[str, Chunk]]) -> Iterator[tuple[str, Chunk]]:
    """Consecutive Arrow chunks of a table gathered into batches of exactly WRITE_BATCH_ROWS
    (without copying: slices of the chunks; frames pass through); each batch is written as soon
    as it is full, each table's remainder at the end."""
    pending: dict[str, pa.Table] = {}
    for name, chunk in chunks:
        if not isinstance(chunk, pa.Table):
            yield name, chunk
            continue
        rows = pa.concat_tables([pending[name], chunk]) if name in pending else chunk
        full = len(rows) - len(rows) % WRITE_BATCH_ROWS
        for lo in range(0, full, WRITE_BATCH_ROWS):
            yield name, rows.slice(lo, WRITE_BATCH_ROWS)
        pending[name] = rows.slice(full)
    for name, rows in pending.items():
        if len(rows):
            yield name, rows


def write_raw(
    chunks: Iterable[tuple[str, Chunk]],
    warehouse_file: Path | None = None,
    *,
    generation: Generation | None = None,
) -> dict[str, int]:
    """Replace the whole raw catalog from ``(table, rows)`` chunks; returns rows per table.
    `generation`: what the generator made them with, when it did (`raw_generation`).

    Chunks (pandas frames or Arrow tables) of different tables may come interleaved (the
    generator writes sessions, their orders and events together). Each has the table's
    columns, in any order, with values already of the right kind. Nothing is visible until
    every chunk is written. Memory stays bounded whatever the number of chunks: they are
    consumed as they come, in batches (`_batched`), by WRITERS connections of one DuckDB held
    to WRITE_MEMORY and WRITE_THREADS.
    """
    with _building_raw(warehouse_file, generation) as con:
        con.execute(f"SET memory_limit = '{WRITE_MEMORY}'")
        con.execute(f"SET threads = {WRITE_THREADS}")
        with closing(_batched(_prefetched(chunks))) as batches:
            counts = _write_in_parallel(con, _Shared(batches))
    return {name: counts[name] for name in RAW_TABLES}


class _Shared:
    """An iterator that several threads take items from, one at a time, until it ends or one of
    them stops it (then it ends for all)."""

    def __init__(self, items: Iterator[tuple[str, Chunk]]) -> None:
        self._items = items
        self._lock = threading.Lock()
        self._stopped = False

    def take(self) -> tuple[str, Chunk] | None:
        with self._lock:
            return None if self._stopped else next(self._items, None)

    def stop(self) -> None:
        self._stopped = True


def _write_in_parallel(con: duckdb.DuckDBPyConnection, batches: _Shared) -> Counter[str]:
    """Write every batch, WRITERS at a time (each on a connection of its own); rows per table.
    A writer that fails, or an interrupt, stops the others after their current batch."""
    with ThreadPoolExecutor(WRITERS, thread_name_prefix="raw-writer") as pool:
        writers = [pool.submit(_write_batches, con.cursor(), batches) for _ in range(WRITERS)]
        try:
            wait(writers, return_when=FIRST_EXCEPTION)
        finally:
            batches.stop()
    return sum((writer.result() for writer in writers), Counter())


def _write_batches(con: duckdb.DuckDBPyConnection, batches: _Shared) -> Counter[str]:
    """Append batches to their raw tables until none is left (closing `con`); rows per table."""
    counts: Counter[str] = Counter()
    with con:
        while (batch := batches.take()) is not None:
            name, chunk = batch
            if name not in RAW_TABLES:
                raise ValueError(f"unknown raw table {name!r} (known: {', '.join(RAW_TABLES)})")
            schema, _ = RAW_TABLES[name]
            columns = ", ".join(_column_names(chunk))
            con.register("chunk", chunk)
            con.execute(f"INSERT INTO {schema}.{name} ({columns}) SELECT {columns} FROM chunk")
            con.unregister("chunk")
            counts[name] += len(chunk)
    return counts


def _column_names(chunk: pd.DataFrame | pa.Table) -> list[str]:
    return list(chunk.column_names if isinstance(chunk, pa.Table) else chunk.columns)


def _row_place(table: Table, chunk: pd.DataFrame, index: object) -> str:
    """Where a row came from: its file and line when the chunk names its file (CSV line 1 is
    the header), else the table and the row's index."""
    file = chunk.attrs.get("file")
    if file:
        return f"{file}, line {int(index) + 2}"
    return f"{table.name}, row {index}"


def _append_problems(con: duckdb.DuckDBPyConnection, table: Table, chunk: pd.DataFrame) -> list[str]:
    """Why `chunk` (registered as ``chunk`` with its index as ``row_index``) cannot be appended
    to ``raw.public.<table>`` as it is now: keys repeated in the chunk or already loaded, and
    references to rows that are not loaded."""
    key = list(table.primary_key)
    key_name = f"{table.name}.{'+'.join(key)}"
    problems = []
    for index in chunk.index[chunk.duplicated(key, keep="first")][:MAX_PROBLEMS]:
        value = ", ".join(str(chunk.at[index, k]) for k in key)
        problems.append(f"{_row_place(table, chunk, index)}: {key_name} {value!r} appears twice in the batch")
    match = " and ".join(f"loaded.{k} = chunk.{k}" for k in key)
    loaded = con.execute(
        f"SELECT row_index FROM chunk WHERE EXISTS"
        f" (SELECT 1 FROM {RAW_SCHEMA}.{table.name} AS loaded WHERE {match})"
        f" ORDER BY row_index LIMIT {MAX_PROBLEMS}"
    ).fetchall()
    for (index,) in loaded:
        value = ", ".join(str(chunk.at[index, k]) for k in key)
        problems.append(f"{_row_place(table, chunk, index)}: {key_name} {value!r} is already loaded")
    for fk in (fk for fk in table.foreign_keys if fk.enforced):
        orphans = con.execute(
            f"SELECT row_index FROM chunk WHERE chunk.{fk.column} IS NOT NULL AND NOT EXISTS"
            f" (SELECT 1 FROM {RAW_SCHEMA}.{fk.table} AS parent"
            f" WHERE parent.{fk.ref_column} = chunk.{fk.column})"
            f" ORDER BY row_index LIMIT {MAX_PROBLEMS}"
        ).fetchall()
        for (index,) in orphans:
            problems.append(
                f"{_row_place(table, chunk, index)}: {table.name}.{fk.column} {chunk.at[index, fk.column]!r}"
                f" not found in {fk.table}.{fk.ref_column} (loaded or in this batch)"
            )
    return problems


def append_raw(
    chunks: Iterable[tuple[str, pd.DataFrame]], warehouse_file: Path | None = None
) -> dict[str, int]:
    """Append ``(table, rows)`` chunks of the seven course tables to the raw catalog; returns
    rows appended per table.

    All or nothing, in one transaction: a row whose primary key is already loaded (or repeated
    in the batch), or that references a row neither loaded nor in the batch, refuses the whole
    batch with a LoadError naming every such row (its file and line when the chunk's
    ``attrs["file"]`` names it), and nothing is written. Parents are appended before their
    children, whatever order the chunks come in.
    """
    by_table: dict[str, list[pd.DataFrame]] = {}
    for name, chunk in chunks:
        if name not in RAW_TABLES or RAW_TABLES[name][0] != RAW_SCHEMA:
            known = ", ".join(t.name for t in TABLES)
            raise ValueError(f"cannot append to raw table {name!r} (appendable: {known})")
        by_table.setdefault(name, []).append(chunk)
    with exclusive(resolve(warehouse_file), "load"):
        return _append(by_table, warehouse_file)


def _append(by_table: dict[str, list[pd.DataFrame]], warehouse_file: Path | None) -> dict[str, int]:
    path = raw_path(warehouse_file)
    if not path.exists():
        raise ValueError(f"no raw data at {path} to append to: first `greenery load --from-csv DIR`")
    counts = {t.name: 0 for t in TABLES if t.name in by_table}
    problems: list[str] = []
    con = open_duckdb(path, warehouse_file=warehouse_file)
    try:
        con.execute("BEGIN")
        for table in TABLES:  # parents first
            for chunk in by_table.get(table.name, []):
                con.register("chunk", chunk.assign(row_index=chunk.index))
                found = _append_problems(con, table, chunk)
                if not found:
                    columns = ", ".join(table.column_names)
                    target = f"{RAW_SCHEMA}.{table.name}"
                    con.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM chunk")
                    counts[table.name] += len(chunk)
                con.unregister("chunk")
                problems += found
        if problems:
            con.execute("ROLLBACK")
            raise LoadError(problems)
        con.execute("COMMIT")
    finally:
        con.close()
    return counts


def replace_products(
    rows: pd.DataFrame, recorded_at: pd.Timestamp, warehouse_file: Path | None = None
) -> None:
    """Overwrite ``raw.public.products`` with one week's state and set the replay clock to its time.

    One transaction: the products and ``raw.replay.clock`` always describe the same moment,
    which is the time the products snapshot records (macros/snapshot_get_time.sql).
    """
    with exclusive(resolve(warehouse_file), "replay"):
        write_products(rows, recorded_at, warehouse_file)


def write_products(rows: pd.DataFrame, recorded_at: pd.Timestamp, warehouse_file: Path | None = None) -> None:
    """`replace_products` without taking the lock: for the replay's child process, which runs
    while its parent holds it (`greenery.warehouse.replay_worker`)."""
    con = open_duckdb(raw_path(warehouse_file), warehouse_file=warehouse_file)
    try:
        con.execute("BEGIN")
        con.execute(f"DELETE FROM {RAW_SCHEMA}.products")
        con.register("rows", rows)
        con.execute(
            f"INSERT INTO {RAW_SCHEMA}.products (product_id, name, price, inventory)"
            " SELECT product_id, name, price, inventory FROM rows"
        )
        con.execute(f"CREATE OR REPLACE TABLE {REPLAY_CLOCK} (recorded_at TIMESTAMP NOT NULL)")
        con.execute(f"INSERT INTO {REPLAY_CLOCK} VALUES (?)", [recorded_at.to_pydatetime()])
        con.execute("COMMIT")
    finally:
        con.close()


def table_exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    """Whether ``schema.table`` exists in the connection's current database."""
    schema, name = relation.split(".")
    query = "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    return con.execute(query, [schema, name]).fetchone()[0] > 0


def replay_clock(warehouse_file: Path | None = None) -> pd.Timestamp | None:
    """The time the raw products describe after a replay (None before any replay)."""
    con = open_duckdb(raw_path(warehouse_file), read_only=True, warehouse_file=warehouse_file)
    try:
        found = table_exists(con, REPLAY_CLOCK)
        value = con.execute(f"select max(recorded_at) from {REPLAY_CLOCK}").fetchone()[0] if found else None
    finally:
        con.close()
    return pd.Timestamp(value) if value is not None else None


@contextmanager
def _reading_raw(warehouse_file: Path | None) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A read-only connection to the raw catalog for the block, None when there is none yet."""
    if not raw_path(warehouse_file).exists():
        yield None
        return
    con = open_duckdb(raw_path(warehouse_file), read_only=True, warehouse_file=warehouse_file)
    try:
        yield con
    finally:
        con.close()


def raw_load_id(warehouse_file: Path | None = None) -> str | None:
    """The id of the load that wrote the raw catalog (None without one)."""
    with _reading_raw(warehouse_file) as con:
        if con is None or not table_exists(con, RAW_LOAD):
            return None
        return con.execute(f"select max(load_id) from {RAW_LOAD}").fetchone()[0]


def raw_generation(warehouse_file: Path | None = None) -> Generation | None:
    """What the raw catalog was generated with: None when it was loaded from CSVs, or written
    before the raw load recorded it (or when there is no raw data)."""
    with _reading_raw(warehouse_file) as con:
        return generation_in(con) if con is not None else None


def generation_in(con: duckdb.DuckDBPyConnection) -> Generation | None:
    """`raw_generation`, on a connection to the raw catalog already open."""
    if not table_exists(con, RAW_LOAD):
        return None
    row = con.execute(f"select * from {RAW_LOAD}").fetchone()
    made = dict(zip([column[0] for column in con.description], row, strict=True))
    if made.get("generated_scale") is None:
        return None
    return Generation(scale=made["generated_scale"], seed=made["generated_seed"])


def raw_counts(warehouse_file: Path | None = None) -> dict[str, int]:
    """Row count of every raw table (empty when nothing is loaded yet)."""
    with _reading_raw(warehouse_file) as con:
        if con is None:
            return {}
        return {
            name: con.execute(f"SELECT count(*) FROM {schema}.{name}").fetchone()[0]
            for name, (schema, _) in RAW_TABLES.items()
        }

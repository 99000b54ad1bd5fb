"""Statements run on reused cursors, prepared once their answers are known to be small.

DuckDB parses, binds and plans a statement each time it runs: for a small answer that is
1–2.5 ms of 4–8 ms on this machine (the relation API, `cursor.sql(…)`, binds it twice). A
statement whose last answer had at most SMALL_ANSWER_ROWS rows runs as a prepared statement
on a reused cursor, which skips all of that. Any other statement runs through the relation
API on a fresh cursor: DuckDB converts a large answer to Arrow in parallel there, while a
prepared statement's answer is copied once more (578,000 rows: 72 ms against 150 ms).
A published warehouse never changes, so an answer's size is known after its first run.
The smallest and quickest of those run on a single-threaded DuckDB when one is given
(StatementRunner).
"""

from __future__ import annotations

import itertools
import threading
import time
import warnings
from collections import OrderedDict

import duckdb
import pyarrow as pa

from greenery.semantic.cache import Lru
from greenery.semantic.watchdog import WATCHDOG

SMALL_ANSWER_ROWS = 10_000  # an answer this small runs prepared from its second run on
SINGLE_THREAD_RUN_S = 0.004  # … and single-threaded, given a connection for that, if it took this long
PREPARED_PER_CURSOR = 64  # statements one cursor keeps prepared, least recently used dropped
IDLE_CURSORS = 8  # cursors kept for reuse (one per query running at once is enough)
KEEP_SIZES = 4096  # statements whose answer size is remembered …
KEEP_SIZES_CHARS = 32 * 1024 * 1024  # … within this many characters of their text

# The prepared path reads a DB-API result as Arrow, which DuckDB warns costs a copy: it is
# taken only for answers small enough that the copy is cheaper than planning again.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)


class _Cursor:
    """One reusable cursor and the statements it has prepared (text → name), oldest first."""

    _names = itertools.count()

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self.cursor = cursor
        self._prepared: OrderedDict[str, str] = OrderedDict()

    def run(self, statement: str) -> pa.Table:
        name = self._prepared.get(statement)
        if name is None:
            name = f"greenery_prepared_{next(self._names)}"
            self.cursor.execute(f"PREPARE {name} AS {statement}")
            self._prepared[statement] = name
            if len(self._prepared) > PREPARED_PER_CURSOR:
                _, oldest = self._prepared.popitem(last=False)
                self.cursor.execute(f"DEALLOCATE {oldest}")
        else:
            self._prepared.move_to_end(statement)
        return self.cursor.execute(f"EXECUTE {name}").to_arrow_table()


class _Cursors:
    """One connection's reusable cursors, each with the statements it has prepared."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._con = connection
        self._idle: list[_Cursor] = []
        self._lock = threading.Lock()

    def run(self, statement: str, timeout_s: float | None) -> pa.Table:
        """The statement's rows, run prepared on an idle cursor (one is made when none is idle)."""
        with self._lock:
            cursor = self._idle.pop() if self._idle else _Cursor(self._con.cursor())
        try:
            with WATCHDOG.limit(timeout_s, cursor.cursor.interrupt):
                table = cursor.run(statement)
        except BaseException:
            cursor.cursor.close()  # a cursor whose statement failed is not reused
            raise
        with self._lock:
            if len(self._idle) < IDLE_CURSORS:
                self._idle.append(cursor)
                return table
        cursor.cursor.close()
        return table

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for cursor in idle:
            cursor.cursor.close()


class StatementRunner:
    """Runs read-only statements on one DuckDB connection, from any number of threads at once.

    Given a second, single-threaded connection to the same data, a small answer whose last run
    took at most SINGLE_THREAD_RUN_S runs there: a query over a few hundred rows takes 1.5 ms
    on one thread and 1.8 ms on two, which wake each other (scale 1000, inventory by week).
    """

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        single_threaded: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self._con = connection
        self._parallel = _Cursors(connection)
        self._single = _Cursors(single_threaded) if single_threaded is not None else None
        # each statement's last answer: (rows, seconds)
        self._last: Lru[str, tuple[int, float]] = Lru(
            KEEP_SIZES, KEEP_SIZES_CHARS, lambda text, _last: len(text)
        )

    def arrow(self, statement: str, timeout_s: float | None = None) -> pa.Table:
        """The statement's rows; DuckDB is interrupted after `timeout_s` (duckdb.InterruptException)."""
        last = self._last.get(statement)
        start = time.perf_counter()
        if last is None or last[0] > SMALL_ANSWER_ROWS:
            with self._con.cursor() as cursor, WATCHDOG.limit(timeout_s, cursor.interrupt):
                table = cursor.sql(statement).to_arrow_table()
        elif self._single is not None and last[1] <= SINGLE_THREAD_RUN_S:
            table = self._single.run(statement, timeout_s)
        else:
            table = self._parallel.run(statement, timeout_s)
        self._last.put(statement, (table.num_rows, time.perf_counter() - start))
        return table

    def close(self) -> None:
        self._parallel.close()
        if self._single is not None:
            self._single.close()

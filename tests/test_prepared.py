"""Statements whose answers are small run prepared on reused cursors, with the same rows and limits."""

from __future__ import annotations

import shutil
import threading

import duckdb
import pytest

from greenery.semantic import prepared
from greenery.semantic.prepared import StatementRunner

SMALL = "select g, count(*) as n, sum(i) as total from t group by g order by g"
LARGE = "select i from t where i < 20000 order by i"


@pytest.fixture
def connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create table t as select range as i, range % 7 as g from range(100000)")
    yield con
    con.close()


def prepared_statements(runner: StatementRunner) -> list[str]:
    """The statements the runner's idle cursors hold prepared."""
    return [statement for cursor in runner._parallel._idle for statement in cursor._prepared]


def test_a_small_answer_runs_prepared_from_its_second_run_with_the_same_rows(connection) -> None:
    runner = StatementRunner(connection)
    expected = connection.sql(SMALL).to_arrow_table()
    assert runner.arrow(SMALL) == expected
    assert prepared_statements(runner) == []  # its size was not known yet
    assert runner.arrow(SMALL) == expected
    assert runner.arrow(SMALL) == expected
    assert prepared_statements(runner) == [SMALL]  # prepared once, on the one cursor reused
    runner.close()


def test_a_large_answer_never_runs_prepared(connection) -> None:
    runner = StatementRunner(connection)
    first, second = runner.arrow(LARGE), runner.arrow(LARGE)
    assert first.num_rows == second.num_rows == 20000 > prepared.SMALL_ANSWER_ROWS
    assert first == second and prepared_statements(runner) == []
    runner.close()


def test_a_cursor_keeps_a_bounded_number_of_statements_prepared(connection, monkeypatch) -> None:
    monkeypatch.setattr(prepared, "PREPARED_PER_CURSOR", 3)
    runner = StatementRunner(connection)
    statements = [f"select {k} as k, count(*) as n from t where g = {k}" for k in range(5)]
    for _ in range(2):
        for statement in statements:
            runner.arrow(statement)
    assert prepared_statements(runner) == statements[-3:]  # the oldest two deallocated
    assert runner.arrow(statements[0]).to_pylist() == [{"k": 0, "n": 14286}]  # prepared again
    runner.close()


def test_a_prepared_statement_is_stopped_at_its_time_limit_and_its_cursor_dropped(connection) -> None:
    runner = StatementRunner(connection)
    slow = "select count(*) as n from t as a, t as b where hash(a.i * 1000003 + b.i) = 0"
    connection.execute("create or replace table t as select range as i, range % 7 as g from range(10)")
    first = runner.arrow(slow)
    assert runner.arrow(slow) == first and first.num_rows == 1
    connection.execute("insert into t select range as i, range % 7 as g from range(10, 400000)")
    with pytest.raises(duckdb.InterruptException):
        runner.arrow(slow, timeout_s=0.3)  # 1.6e11 pairs, prepared (its answer was small)
    assert prepared_statements(runner) == []  # the interrupted cursor is not reused
    assert runner.arrow(SMALL).num_rows == 7
    runner.close()


def test_threads_share_the_runner_and_get_their_own_rows(connection) -> None:
    runner = StatementRunner(connection)
    statements = [f"select {k} as k, count(*) as n from t where g = {k}" for k in range(7)]
    expected = {s: connection.sql(s).to_arrow_table() for s in statements}
    failures: list[str] = []

    def work() -> None:
        for _ in range(20):
            for statement in statements:
                if runner.arrow(statement) != expected[statement]:
                    failures.append(statement)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert 1 <= len(runner._parallel._idle) <= prepared.IDLE_CURSORS
    runner.close()
    assert runner._parallel._idle == []


@pytest.fixture
def two_readers(tmp_path) -> tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection]:
    """Two DuckDBs reading the same data: the usual one and a single-threaded one (one file
    each: DuckDB opens a file once per process, under one configuration)."""
    path, twin = tmp_path / "t.duckdb", tmp_path / "twin.duckdb"
    with duckdb.connect(str(path)) as writer:
        writer.execute("create table t as select range as i, range % 7 as g from range(100000)")
    shutil.copyfile(path, twin)
    parallel = duckdb.connect(str(path), read_only=True, config={"threads": 2})
    single = duckdb.connect(str(twin), read_only=True, config={"threads": 1})
    yield parallel, single
    parallel.close()
    single.close()


def test_a_small_answer_that_ran_quickly_runs_single_threaded(two_readers, monkeypatch) -> None:
    parallel, single = two_readers
    assert single.execute("select current_setting('threads')").fetchone() == (1,)
    expected = parallel.sql(SMALL).to_arrow_table()
    monkeypatch.setattr(prepared, "SINGLE_THREAD_RUN_S", 60.0)  # every run counts as quick
    runner = StatementRunner(parallel, single)
    assert [runner.arrow(SMALL) for _ in range(3)] == [expected] * 3
    assert runner._single is not None
    assert [s for c in runner._single._idle for s in c._prepared] == [SMALL]
    assert prepared_statements(runner) == []
    runner.close()


def test_a_small_answer_that_ran_slowly_stays_on_the_parallel_reader(two_readers, monkeypatch) -> None:
    parallel, single = two_readers
    monkeypatch.setattr(prepared, "SINGLE_THREAD_RUN_S", 0.0)  # no run counts as quick
    runner = StatementRunner(parallel, single)
    for _ in range(3):
        runner.arrow(SMALL)
    assert runner._single is not None and runner._single._idle == []
    assert prepared_statements(runner) == [SMALL]
    runner.close()

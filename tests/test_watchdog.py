"""Query time limits (greenery.semantic.watchdog): a long statement is stopped, an ended one never is."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import duckdb
import pytest

from greenery.semantic.layer import DuckDbClient, QueryInterrupted
from greenery.semantic.watchdog import WATCHDOG, Cancellable, Watchdog, interrupting, running

ENDLESS = "select sum(a.range * b.range) from range(200000) as a, range(200000) as b"  # 4e10 rows


def test_a_statement_past_its_limit_is_interrupted_and_the_connection_still_answers() -> None:
    client = DuckDbClient(duckdb.connect())
    start = time.monotonic()
    with pytest.raises(QueryInterrupted, match=r"ran longer than 0\.3 s"):
        client.arrow(ENDLESS, timeout_s=0.3)
    assert 0.3 <= time.monotonic() - start < 30
    assert client.arrow("select 42 as answer", timeout_s=0.3).to_pylist() == [{"answer": 42}]


def test_deadlines_fire_in_time_order_and_never_after_their_block_ended() -> None:
    watchdog = Watchdog()
    fired: list[str] = []
    done = {name: threading.Event() for name in ("late", "early")}

    def interrupt(name: str) -> None:
        fired.append(name)
        done[name].set()

    def wait_in(name: str, seconds: float) -> None:
        with watchdog.limit(seconds, lambda: interrupt(name)):
            done[name].wait(5)

    late = threading.Thread(target=wait_in, args=("late", 0.6))
    late.start()
    time.sleep(0.05)  # the later deadline is in first: the earlier one must wake the watchdog
    wait_in("early", 0.1)
    late.join()
    assert fired == ["early", "late"]

    with watchdog.limit(0.1, lambda: fired.append("ended")):
        pass
    for _ in range(200):  # many ended statements: their deadlines do not pile up
        with watchdog.limit(60, lambda: fired.append("ended")):
            pass
    time.sleep(0.3)
    assert fired == ["early", "late"]
    assert len(watchdog._heap) <= 64


def test_an_ended_statement_leaves_its_connection_to_be_freed() -> None:
    """A deadline that ended waits in the heap until it comes up, without holding its connection
    (a retired published copy's, say): DuckDB connections were alive until the process ended."""
    watchdog = Watchdog()
    connection = duckdb.connect()
    with watchdog.limit(60, connection.interrupt):
        connection.execute("select 1")
        time.sleep(0.2)  # the watchdog is waiting for this deadline, and stays asleep after it ends
    assert len(watchdog._heap) == 1
    gone = weakref.ref(connection)
    del connection
    gc.collect()
    assert gone() is None


def test_stopping_work_interrupts_its_running_statement_and_refuses_the_next() -> None:
    """A client's cancel (or statement_timeout) while a statement runs for its work, in this
    thread or in work it started (a query job inside a Postgres statement)."""
    client = DuckDbClient(duckdb.connect())
    statement = Cancellable()
    stopper = threading.Timer(0.3, lambda: statement.stop("user request"))
    start = time.monotonic()
    with running(statement), running(Cancellable()) as job:
        stopper.start()
        with pytest.raises(QueryInterrupted):
            client.arrow(ENDLESS, timeout_s=60)
        assert 0.3 <= time.monotonic() - start < 30
        assert (statement.stopped_for, job.stopped_for) == ("user request", "user request")
        with pytest.raises(QueryInterrupted):  # refused before it starts: DuckDB would miss the interrupt
            client.arrow("select 42 as answer", timeout_s=60)
    assert client.arrow("select 42 as answer", timeout_s=60).to_pylist() == [{"answer": 42}]


def test_only_what_runs_for_the_work_now_is_interrupted() -> None:
    calls: list[str] = []
    with interrupting(lambda: calls.append("outside any work")):  # nothing to register with
        pass
    work = Cancellable()
    with running(work):
        with WATCHDOG.limit(None, lambda: calls.append("ended")):
            pass
        with interrupting(lambda: calls.append("waiting")):
            work.stop("statement timeout")
            work.stop("user request")  # the first reason stays; nothing is interrupted twice
        with interrupting(lambda: calls.append("after the stop")):
            pass
    assert calls == ["waiting", "after the stop"]
    assert work.stopped_for == "statement timeout"


def test_a_repeated_check_runs_until_its_block_ends() -> None:
    watchdog = Watchdog()
    checks: list[float] = []
    with watchdog.every(0.05, lambda: checks.append(time.monotonic())):
        time.sleep(0.5)
    seen = len(checks)
    time.sleep(0.2)
    assert 5 <= seen == len(checks)  # about ten, and none after the block
    assert not watchdog._pending

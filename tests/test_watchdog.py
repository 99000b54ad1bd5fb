"""Query time limits (greenery.semantic.watchdog): a long statement is stopped, an ended one never is."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import duckdb
import pytest

from greenery.semantic.layer import DuckDbClient, QueryInterrupted
from greenery.semantic.watchdog import Watchdog

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

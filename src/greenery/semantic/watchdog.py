"""Time limits and cancels for running statements: one watchdog thread for all of them.

A timer thread per statement costs a thread start on every query (about 0.35 ms on this
2-core machine, as much as a whole cached answer); the watchdog sleeps until the earliest
deadline and calls that statement's `interrupt`.

A client may also stop its work while it runs (a Postgres cancel request or statement_timeout,
GraphQL's cancelQuery): that work is a `Cancellable` run with `running`, and every DuckDB
statement started for it under `Watchdog.limit` is interrupted when it is stopped.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field

import duckdb


class Cancellable:
    """Work a client may stop while it runs: whatever runs for it registers how to interrupt it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._interrupts: list[Callable[[], None]] = []
        self.stopped_for: str | None = None  # why it was stopped ("user request", "statement timeout")

    def stop(self, reason: str) -> None:
        """Interrupt what runs for the work now; what would start for it later is refused."""
        with self._lock:
            if self.stopped_for is not None:
                return
            self.stopped_for = reason
            interrupts = list(self._interrupts)
        for interrupt in interrupts:
            interrupt()

    @contextmanager
    def interrupting(self, interrupt: Callable[[], None]) -> Iterator[None]:
        """Within the block, stopping the work calls `interrupt` (at once, if it was stopped already)."""
        with self._lock:
            stopped = self.stopped_for is not None
            if not stopped:
                self._interrupts.append(interrupt)
        if stopped:
            interrupt()
        try:
            yield
        finally:
            with self._lock:
                if not stopped:
                    self._interrupts.remove(interrupt)


class RunningWork:
    """The work running for one server, to stop all of it when the server shuts down (no thread
    may still be inside DuckDB when the process exits: it would abort)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work: set[Cancellable] = set()
        self._stopped_for: str | None = None

    @property
    def stopped(self) -> bool:
        """Whether stop_all was called (the server is stopping)."""
        return self._stopped_for is not None

    @contextmanager
    def track(self, work: Cancellable) -> Iterator[None]:
        """Within the block, `stop_all` stops `work` (at once, if it was called already)."""
        with self._lock:
            self._work.add(work)
            stopped_for = self._stopped_for
        if stopped_for is not None:
            work.stop(stopped_for)
        try:
            yield
        finally:
            with self._lock:
                self._work.discard(work)

    def stop_all(self, reason: str) -> None:
        """Stop the work running now, and any tracked from now on."""
        with self._lock:
            self._stopped_for = reason
            running_now = list(self._work)
        for work in running_now:
            work.stop(reason)


_RUNNING: ContextVar[Cancellable | None] = ContextVar("greenery_running", default=None)


@contextmanager
def running(work: Cancellable) -> Iterator[Cancellable]:
    """Run the block as `work`: stopping it, or the work this thread was running already (which
    `work` is part of), interrupts what the block runs."""
    outer = _RUNNING.get()
    token = _RUNNING.set(work)
    try:
        if outer is None:
            yield work
        else:
            with outer.interrupting(lambda: work.stop(outer.stopped_for or "")):
                yield work
    finally:
        _RUNNING.reset(token)


def interrupting(interrupt: Callable[[], None]) -> AbstractContextManager[None]:
    """Within the block, stopping the work this thread runs (if any) calls `interrupt`."""
    work = _RUNNING.get()
    return nullcontext() if work is None else work.interrupting(interrupt)


@dataclass(order=True)
class _Deadline:
    at: float
    seq: int
    # None once done: a done deadline may wait in the heap, without holding its statement's cursor
    interrupt: Callable[[], None] | None = field(compare=False)
    every: float | None = field(default=None, compare=False)  # a check repeated this often, until done

    @property
    def done(self) -> bool:
        return self.interrupt is None

    def end(self) -> None:
        self.interrupt = None

    def fire(self) -> None:
        """Interrupt the statement, and end (a repeated check: call it, and come up again later)."""
        interrupt = self.interrupt
        if self.every is None:
            self.interrupt = None
        else:
            self.at += self.every
        if interrupt is not None:
            interrupt()


class Watchdog:
    """Calls a statement's `interrupt` once its time is up, unless the statement ended first."""

    def __init__(self) -> None:
        self._heap: list[_Deadline] = []
        self._pending = 0  # deadlines in the heap not yet done
        self._wake = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    @contextmanager
    def limit(self, seconds: float | None, interrupt: Callable[[], None]) -> Iterator[None]:
        """Within the block, a DuckDB statement's `interrupt` is called after `seconds` (never, for
        None), or when the work this thread runs is stopped; if it was stopped already, the block
        does not start (duckdb.InterruptException, as from an interrupted statement)."""
        work = _RUNNING.get()
        if work is not None and work.stopped_for is not None:
            raise duckdb.InterruptException(f"the statement was stopped: {work.stopped_for}")
        with interrupting(interrupt), self._deadline(seconds, interrupt):
            yield

    def every(self, seconds: float, check: Callable[[], None]) -> AbstractContextManager[None]:
        """Within the block, `check` is called every `seconds` (on the watchdog's thread: it must
        be quick), such as whether the client that waits for the block has gone."""
        return self._deadline(seconds, check, every=seconds)

    @contextmanager
    def _deadline(
        self, seconds: float | None, interrupt: Callable[[], None], every: float | None = None
    ) -> Iterator[None]:
        if seconds is None:
            yield
            return
        deadline = _Deadline(time.monotonic() + seconds, next(self._seq), interrupt, every)
        with self._wake:
            heapq.heappush(self._heap, deadline)
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="greenery-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0] is deadline:
                self._wake.notify()
        try:
            yield
        finally:
            with self._wake:  # after this, `interrupt` is never called for this statement
                if not deadline.done:
                    deadline.end()
                    self._pending -= 1
                if len(self._heap) > 64 and self._pending < len(self._heap) // 2:
                    self._heap = [d for d in self._heap if not d.done]  # ended statements' deadlines
                    heapq.heapify(self._heap)

    def _watch(self) -> None:
        with self._wake:
            while True:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                wait = self._heap[0].at - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                due = heapq.heappop(self._heap)
                due.fire()  # under the lock: the statement's block has not ended yet
                if due.done:
                    self._pending -= 1
                else:
                    heapq.heappush(self._heap, due)


WATCHDOG = Watchdog()

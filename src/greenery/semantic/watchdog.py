"""Time limits for running statements: one watchdog thread for all of them.

A timer thread per statement costs a thread start on every query (about 0.35 ms on this
2-core machine, as much as a whole cached answer); the watchdog sleeps until the earliest
deadline and calls that statement's `interrupt`.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(order=True)
class _Deadline:
    at: float
    seq: int
    # None once done: a done deadline may wait in the heap, without holding its statement's cursor
    interrupt: Callable[[], None] | None = field(compare=False)

    @property
    def done(self) -> bool:
        return self.interrupt is None

    def end(self) -> None:
        self.interrupt = None

    def fire(self) -> None:
        """Interrupt the statement, and end."""
        interrupt, self.interrupt = self.interrupt, None
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
        """Within the block, `interrupt` is called after `seconds` (never, for None)."""
        if seconds is None:
            yield
            return
        deadline = _Deadline(time.monotonic() + seconds, next(self._seq), interrupt)
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
                self._pending -= 1
                due.fire()  # under the lock: the statement's block has not ended yet


WATCHDOG = Watchdog()

"""Fault injection for tests/test_faults.py, loaded by the `greenery` processes it starts
(their PYTHONPATH names this folder; Python imports a ``sitecustomize`` module at start-up).

With ``GREENERY_TEST_PAUSE_AT`` set to a path fragment, renaming a path that contains it
(``os.rename`` / ``os.replace``: a step's last move, from its temporary name to the real one)
first sleeps, so the test can kill the step at that point for certain, with everything
written aside and nothing swapped in. Nothing else changes; without the variable this is a
no-op.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

PAUSE_ENV = "GREENERY_TEST_PAUSE_AT"
PAUSE_SECONDS = 300


def _pausing(move: Callable[..., Any], fragment: str) -> Callable[..., Any]:
    def paused_move(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        if fragment in os.fspath(src):
            print(f"paused before moving {os.fspath(src)}", file=sys.stderr, flush=True)
            time.sleep(PAUSE_SECONDS)
        return move(src, dst, *args, **kwargs)

    return paused_move


if fragment := os.environ.get(PAUSE_ENV):
    os.rename = _pausing(os.rename, fragment)
    os.replace = _pausing(os.replace, fragment)

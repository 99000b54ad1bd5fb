"""A small thread-safe least-recently-used map: compiled SQL, answers, parsed documents."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A thread-safe least-recently-used map bounded in entries and (optionally) in bytes.

    `size(key, value)` is what one entry holds on to, in bytes (or characters, for text).
    """

    def __init__(
        self, max_items: int, max_bytes: int = 0, size: Callable[[K, V], int] = lambda _k, _v: 0
    ) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._max_items, self._max_bytes, self._size = max_items, max_bytes, size
        self._bytes = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def pop(self, key: K) -> V | None:
        with self._lock:
            value = self._items.pop(key, None)
            if value is not None:
                self._bytes -= self._size(key, value)
            return value

    def put(self, key: K, value: V) -> None:
        size = self._size(key, value)
        if self._max_bytes and size > self._max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes += size - (self._size(key, old) if old is not None else 0)
            self._items[key] = value
            while len(self._items) > self._max_items or (self._max_bytes and self._bytes > self._max_bytes):
                evicted_key, evicted = self._items.popitem(last=False)
                self._bytes -= self._size(evicted_key, evicted)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def held(self) -> int:
        """What the entries hold on to together (in the unit of `size`)."""
        return self._bytes

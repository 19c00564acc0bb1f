"""A small cache whose entries live a bounded time: what the server knows of an API key is at
most TTL seconds old, so a revocation saved by any replica is refused everywhere within it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# Revocation must be effective within 1 s on every replica (README, API keys): half of it.
KEY_CACHE_TTL = 0.5  # seconds
KEY_CACHE_MAXSIZE = 10_000


class TtlCache(Generic[K, V]):
    """Values by key for at most `ttl` seconds of `clock` after they were put; the oldest go
    first past `maxsize`."""

    def __init__(
        self,
        ttl: float = KEY_CACHE_TTL,
        maxsize: int = KEY_CACHE_MAXSIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._maxsize = maxsize
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            put_at, value = entry
            if self._clock() - put_at >= self._ttl:
                del self._entries[key]
                return None
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries.pop(key, None)
            while len(self._entries) >= self._maxsize:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (self._clock(), value)

    def forget_values(self, matches: Callable[[V], bool]) -> None:
        """Drops every entry whose value `matches` (e.g. a key just revoked here)."""
        with self._lock:
            for key in [k for k, (_, v) in self._entries.items() if matches(v)]:
                del self._entries[key]

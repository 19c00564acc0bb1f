"""Leases: "only one at a time" across the processes of a deployment.

A sync of an import, or the projection of a view, must run in one place only. In one process
(SQLite allows no other) a lock is enough. Across replicas sharing PostgreSQL, an advisory lock
held by a database session is: it goes away with the session, so a process that dies, even by
SIGKILL, releases what it held.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import psycopg


def lock_key(name: str) -> int:
    """A 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Leases(Protocol):
    def hold(self, name: str) -> contextlib.AbstractContextManager[bool]:
        """Holds the lease for the block, if no one else does: yields whether it does."""
        ...


class LocalLeases:
    """Leases among the threads of one process."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        if not lock.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


class PostgresLeases:
    """Leases among every process connected to one PostgreSQL database."""

    def __init__(self, database_url: str, namespace: str):
        self._url = database_url
        self._namespace = namespace
        self._local = LocalLeases()

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        with self._local.hold(name) as held_here:
            if not held_here:
                yield False
                return
            with psycopg.connect(self._url, autocommit=True) as conn:
                yield _try_advisory_lock(conn, f"{self._namespace}/{name}")


def _try_advisory_lock(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),)).fetchone()
    return bool(row and row[0])


@contextlib.contextmanager
def file_lease(path: Any, stopping: threading.Event, retry: float) -> Iterator[bool]:
    """Waits for an exclusive lock on a file (one per host), or until `stopping` is set."""
    import fcntl

    with open(path, "a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stopping.wait(retry):
                    yield False
                    return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def advisory_lease(
    database_url: str, name: str, stopping: threading.Event, retry: float
) -> Iterator[psycopg.Connection[Any] | None]:
    """Waits for a PostgreSQL advisory lock, or until `stopping` is set; yields the session that
    holds it (None if stopped first)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        while not _try_advisory_lock(conn, name):
            if stopping.wait(retry):
                yield None
                return
        yield conn

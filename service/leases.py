"""Leases: "only one at a time" across the processes of a deployment.

A sync of an import, or the projection of a view, must run in one place only. In one process
(SQLite allows no other) a lock is enough. Across replicas sharing PostgreSQL, an advisory lock
held by a database session is: it goes away with the session, so a process that dies, even by
SIGKILL, releases what it held.

A session also outlives a holder that stops without closing it: a host that dies without a FIN,
a network partition, a process that is stopped (SIGSTOP, a VM pause, a long GC). TCP keepalives
would end it after hours by default, and not at all for a stopped process, whose kernel still
answers them. So a lease session here is bounded by the server, not by TCP:

- its session has `idle_session_timeout` (and `idle_in_transaction_session_timeout`) = `ttl`,
  AUTOIMPORT_LEASE_TIMEOUT (default 10 s): PostgreSQL ends it, and frees the lock, `ttl` seconds
  after the last query it got, whatever became of the holder;
- a heartbeat thread per held lease keeps a live holder's session busy (SELECT 1 every ttl/3);
- the holder learns that it lost the lease from `Lease.lost` / `Lease.check()`, or
  `PostgresLeases.check(name)`: lost once a heartbeat fails, or once `ttl` has passed since the
  last confirmed heartbeat was sent. That is conservative: the server's idle clock started after
  that heartbeat was sent, so a holder that runs stops before anyone else can have the lease. A
  lost lease stays lost and its session is closed;
- libpq TCP keepalives and tcp_user_timeout make a holder whose database host died learn it
  within about `ttl`, instead of after TCP's 15 minutes of retransmissions.

Bounds, from the moment a holder stops: its lock is free after at most `ttl` (its last query was
before it stopped). A sync of its import runs at the next TriggerSync after that (the scheduler's
next round); a projector's lease goes to a waiting process within `ttl` plus its retry interval
(1 s). The holder, if it wakes, sees `lost` at once (more than `ttl` has passed).

A lease makes the work run once; it does not make a woken holder's writes safe by itself (it
may write before it looks). The stores fence those, so no lease table with fencing tokens is
needed: a sync's page is saved at the import's version it read, and another replica's new sync
records SyncStarted on the import first, so the old sync's next save is refused and, reading the
import again, it sees another sync running and stops (service/sync.py). A projector's batch is
applied only if the view's position is still the one the batch started from, checked under a
transaction lock (service/projector.py `catch_up`). The lease sessions need PostgreSQL 14 or
later (idle_session_timeout) and a direct connection: a transaction-pooling PgBouncer would lose
session advisory locks.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

import psycopg

from connectors.base import RetryableError
from service.config import lease_timeout

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A 64-bit advisory lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class LeaseLost(RetryableError):
    """The lease was lost while held: someone else may be doing the work now. A RetryableError,
    so that a sync that checks its lease between pages stops as it does at its deadline: the
    reason is recorded and the next sync resumes after the last page saved."""


class Lease:
    """What holding a lease yields: true if it was taken. `lost` and `check()` tell the holder
    whether it still holds it; a lease within one process (a lock, a file lock) is never lost."""

    def __init__(self, name: str, acquired: bool):
        self.name = name
        self.acquired = acquired

    def __bool__(self) -> bool:
        return self.acquired

    @property
    def lost(self) -> bool:
        return False

    def check(self) -> None:
        """Raises LeaseLost unless the lease is still held."""
        if not self.acquired:
            raise LeaseLost(f"the lease {self.name} is not held here")
        if self.lost:
            raise LeaseLost(self.reason)

    @property
    def reason(self) -> str:
        return ""


class Leases(Protocol):
    def hold(self, name: str) -> contextlib.AbstractContextManager[Lease]:
        """Holds the lease for the block, if no one else does: yields a Lease, true if held."""
        ...

    def check(self, name: str) -> None:
        """Raises LeaseLost if this process's hold of `name` was lost (call it while holding)."""
        ...


class LocalLeases:
    """Leases among the threads of one process."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[Lease]:
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        if not lock.acquire(blocking=False):
            yield Lease(name, False)
            return
        try:
            yield Lease(name, True)
        finally:
            lock.release()

    def check(self, name: str) -> None:
        pass  # a lock in this process is held until released


class PostgresLease(Lease):
    """An advisory lock held by a session of its own, kept alive by a heartbeat thread."""

    def __init__(self, name: str, connection: psycopg.Connection[Any], ttl: float, since: float):
        super().__init__(name, True)
        self.connection = connection
        self.ttl = ttl
        self._valid_until = since + ttl  # `since`: when the query that took the lock was sent
        self._lost = threading.Event()
        self._reason = ""
        self._guard = threading.Lock()  # the holder and the heartbeat may both find it lost
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"lease-heartbeat {name}", daemon=True
        )

    @property
    def lost(self) -> bool:
        if not self._lost.is_set() and time.monotonic() > self._valid_until:
            self.mark_lost(
                f"no heartbeat confirmed for {self.ttl:g} s (this process was stopped, or cut "
                "off from the database)"
            )
        return self._lost.is_set()

    @property
    def reason(self) -> str:
        return f"lost the lease {self.name}: {self._reason}" if self._lost.is_set() else ""

    def start(self) -> None:
        self._thread.start()

    def release(self) -> None:
        """Stops the heartbeat and ends the session, which frees the lock."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.connection.close()

    def mark_lost(self, reason: str) -> None:
        """Takes the lease as lost (e.g. by its holder, whose use of the session failed)."""
        with self._guard:
            if self._lost.is_set():
                return
            self._reason = reason
            self._lost.set()
        self._stop.set()  # the heartbeat thread ends the session
        log.warning("lost the lease %s: %s", self.name, reason)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            if self.lost:  # stopped for longer than ttl: the server may have ended the session
                break
            sent = time.monotonic()
            try:
                self.connection.execute("SELECT 1")
            except psycopg.Error as e:
                self.mark_lost(f"its database session ended ({' '.join(str(e).split())})")
                break
            self._valid_until = sent + self.ttl
        if self._lost.is_set():
            # Ends the session now, so the lock is free at once if the server kept it, and the
            # holder's own use of the session (LISTEN) fails rather than waits.
            with self.connection.lock:
                self.connection.close()


def lease_session(database_url: str, ttl: float) -> psycopg.Connection[Any]:
    """A session for advisory locks that PostgreSQL ends once idle for `ttl` seconds, and that
    notices a dead server or network within about `ttl`."""
    beat = max(1, round(ttl / 3))
    conn = psycopg.connect(
        database_url,
        autocommit=True,
        application_name=f"autoimport lease pid {os.getpid()} on {socket.gethostname()}"[:63],
        connect_timeout=max(2, round(ttl)),
        keepalives=1,
        keepalives_idle=beat,
        keepalives_interval=beat,
        keepalives_count=3,
        tcp_user_timeout=int(ttl * 1000),  # unacknowledged data (a heartbeat) fails after ttl
    )
    ms = str(int(ttl * 1000))
    conn.execute(
        "SELECT set_config('idle_session_timeout', %s, false),"
        " set_config('idle_in_transaction_session_timeout', %s, false)",
        (ms, ms),
    )
    return conn


def _try_advisory_lock(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),)).fetchone()
    return bool(row and row[0])


@contextlib.contextmanager
def _held(lease: PostgresLease) -> Iterator[PostgresLease]:
    lease.start()
    try:
        yield lease
    finally:
        lease.release()


class PostgresLeases:
    """Leases among every process connected to one PostgreSQL database. `ttl`: seconds a lease
    outlives its holder's last heartbeat (default AUTOIMPORT_LEASE_TIMEOUT)."""

    def __init__(self, database_url: str, namespace: str, ttl: float | None = None):
        self._url = database_url
        self._namespace = namespace
        self._ttl = lease_timeout() if ttl is None else ttl
        self._local = LocalLeases()
        self._held: dict[str, Lease] = {}

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[Lease]:
        with self._local.hold(name) as held_here:
            if not held_here:
                yield held_here
                return
            with contextlib.closing(lease_session(self._url, self._ttl)) as conn:
                since = time.monotonic()
                if not _try_advisory_lock(conn, f"{self._namespace}/{name}"):
                    yield Lease(name, False)
                    return
                with _held(PostgresLease(name, conn, self._ttl, since)) as lease:
                    self._held[name] = lease
                    try:
                        yield lease
                    finally:
                        del self._held[name]

    def check(self, name: str) -> None:
        lease = self._held.get(name)
        if lease is None:
            raise LeaseLost(f"the lease {name} is not held here")
        lease.check()


@contextlib.contextmanager
def file_lease(path: Any, stopping: threading.Event, retry: float) -> Iterator[Lease]:
    """Waits for an exclusive lock on a file (one per host), or until `stopping` is set."""
    import fcntl

    with open(path, "a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stopping.wait(retry):
                    yield Lease(str(path), False)
                    return
        try:
            yield Lease(str(path), True)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def advisory_lease(
    database_url: str,
    name: str,
    stopping: threading.Event,
    retry: float,
    ttl: float | None = None,
) -> Iterator[Lease]:
    """Waits for a PostgreSQL advisory lock, or until `stopping` is set; yields the lease (false
    if stopped first), a PostgresLease whose `connection` the holder may use (e.g. to LISTEN)."""
    ttl = lease_timeout() if ttl is None else ttl
    with contextlib.closing(lease_session(database_url, ttl)) as conn:
        while True:
            since = time.monotonic()
            if _try_advisory_lock(conn, name):
                break
            # Each try is a query, which keeps the waiting session from timing out as idle.
            if stopping.wait(min(retry, ttl / 3)):
                yield Lease(name, False)
                return
        with _held(PostgresLease(name, conn, ttl, since)) as lease:
            yield lease

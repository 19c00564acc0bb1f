"""Read-model storage shared by SQLite and PostgreSQL.

A view is a TrackingRecorder (SQLite or PostgreSQL) that also keeps rows. Each change of rows is
written in the same transaction as the tracking record of the event that caused it, so an event
is applied exactly once, whatever crashes or replays happen. Statements are written once: `{t}`
stands before a table name (on PostgreSQL: the schema and the view's prefix, as the views share
the database), `{p}` before the name of an index (the prefix alone), and `:name` parameters
become `%(name)s` for psycopg.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.postgres import PostgresTrackingRecorder

from domain.limits import MAX_PAGE_TOKEN

_NAMED_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")

Statement = tuple[str, dict[str, Any]]


class SqlView(TrackingRecorder):
    """Rows and tracking of a view; concrete classes add SQLite's or PostgreSQL's recorder."""

    # CREATE TABLE / CREATE INDEX statements of the view, with `{t}` before each name.
    ddl: ClassVar[tuple[str, ...]] = ()
    datastore: Any

    def sql(self, statement: str) -> str:
        if not isinstance(self, PostgresTrackingRecorder):
            return statement.replace("{t}", "").replace("{p}", "")
        prefix = self.tracking_table_name.removesuffix("tracking")
        statement = statement.replace("{t}", f"{self.datastore.schema}.{prefix}")
        return _NAMED_PARAMETER.sub(r"%(\1)s", statement.replace("{p}", prefix))

    def create_table(self) -> None:
        for attempt in range(5):
            try:
                super().create_table()  # type: ignore[misc]
                break
            except (IntegrityError, OperationalError):
                # Another process (a server and a projector starting together) created the
                # tracking table between eventsourcing's check and its first insert, or holds
                # the lock of SQLite's switch to WAL: look again.
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        with self.datastore.transaction(commit=True) as c:
            for statement in self.ddl:
                c.execute(self.sql(statement))

    def record(self, tracking: Tracking, statements: Iterable[Statement] = ()) -> None:
        """Applies the statements and records the tracking, atomically. An event already
        recorded makes the insert of its tracking fail, which rolls the statements back."""
        state = self._local()
        if state.cursor is not None:  # in a batch: its last tracking is recorded at its end
            state.pending.extend(statements)
            state.tracking = tracking
            return
        with self.datastore.transaction(commit=True) as c:
            for statement, params in statements:
                c.execute(self.sql(statement), params)
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def insert_tracking(self, tracking: Tracking) -> None:
        self.record(tracking)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Records made inside share one transaction, and the tracking of the batch's last
        event is recorded once, at its end: one commit and one tracking write for hundreds of
        events. All or nothing, so still exactly once: a batch already recorded by someone else
        fails on its tracking and rolls back whole."""
        state = self._local()
        with self.datastore.transaction(commit=True) as c:
            state.cursor, state.tracking, state.pending = c, None, []
            try:
                yield
                self._flush(state)
                if state.tracking is not None:
                    self._insert_tracking(c, state.tracking)  # type: ignore[attr-defined]
            finally:
                state.cursor, state.tracking, state.pending = None, None, []

    def _flush(self, state: threading.local) -> None:
        """Sends a batch's pending statements, runs of the same statement as one executemany
        (one round trip instead of hundreds on PostgreSQL)."""
        for statement, run in itertools.groupby(state.pending, key=lambda s: s[0]):
            state.cursor.executemany(self.sql(statement), [params for _, params in run])
        state.pending = []

    def _local(self) -> threading.local:
        if not hasattr(self, "_thread_state"):
            self._thread_state = threading.local()
        if not hasattr(self._thread_state, "cursor"):
            self._thread_state.cursor = None
            self._thread_state.tracking = None
            self._thread_state.pending = []
        return self._thread_state

    def fetch(self, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of a query; inside a batch, in the batch's transaction, which sees its writes."""
        state = self._local()
        if state.cursor is not None:
            self._flush(state)
            state.cursor.execute(self.sql(statement), params)
            return [dict(row) for row in state.cursor.fetchall()]
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.sql(statement), params)
            return [dict(row) for row in c.fetchall()]

    def dump(self, table: str, key: str) -> list[dict[str, Any]]:
        """Every row of a table, in key order (for comparing two views)."""
        return self.fetch(f"SELECT * FROM {{t}}{table} ORDER BY {key}", {})

    def wait_until(
        self, application_name: str, notification_id: int | None, timeout: float
    ) -> None:
        """Blocks until the view has processed `notification_id`; TimeoutError after `timeout`.

        Polls with short sleeps first: an in-process projector usually catches up in milliseconds.
        """
        if notification_id is None or notification_id <= self._reached.get(application_name, 0):
            return  # seen processed already: a view never goes back
        deadline = time.monotonic() + timeout
        pause = 0.002
        while not self.has_tracking_id(application_name, notification_id):
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"read model {type(self).__name__} has not caught up to event {notification_id}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        # Races between readers can only lower the mark: then a query more, never a stale read.
        reached = self._reached.get(application_name, 0)
        self._reached[application_name] = max(reached, notification_id)

    @property
    def _reached(self) -> dict[str, int]:
        """The highest notification id seen processed, per application: one query fewer per
        read while nothing new was saved."""
        if not hasattr(self, "_reached_ids"):
            self._reached_ids: dict[str, int] = {}
        return self._reached_ids


class InvalidPageToken(ValueError):
    pass


def encode_page_token(after: list[str], query: str) -> str:
    """A URL-safe cursor: the sort key of the last row given, and which query it is for. Callers
    get it signed (PageTokens); the views read it back only after its signature is checked."""
    raw = json.dumps({"after": after, "query": query}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, query: str, size: int) -> list[str]:
    """The sort key in a cursor; any other text (whatever its shape) is InvalidPageToken, never
    a value of another type reaching the SQL driver."""
    try:
        if len(token) > MAX_PAGE_TOKEN:
            raise ValueError("too long")
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, key = data["after"], data["query"]
        if not isinstance(after, list) or len(after) != size:
            raise ValueError("wrong sort key")
        if not all(isinstance(value, str) for value in after) or not isinstance(key, str):
            raise ValueError("wrong types")
    except (ValueError, KeyError, TypeError, RecursionError):
        raise InvalidPageToken("is not a page token this service issued") from None
    if key != query:
        raise InvalidPageToken("belongs to a list with other filters: start again without it")
    return after


class PageTokens:
    """The page tokens callers get: a view's cursor and an HMAC of it under a key derived from
    the server's secret (shared by every replica), so that a caller cannot write a cursor of its
    own: the cursor's query key is a plain hash anyone could compute."""

    _CONTEXT = b"autoimport page tokens v1"

    def __init__(self, secret: str):
        self._key = hmac.new(secret.encode(), self._CONTEXT, hashlib.sha256).digest()

    def sign(self, cursor: str) -> str:
        return f"{cursor}.{self._mac(cursor)}" if cursor else ""

    def verify(self, token: str) -> str:
        """The cursor of a token this service signed ("" for none), else InvalidPageToken."""
        if not token:
            return ""
        cursor, _, mac = token[:MAX_PAGE_TOKEN].rpartition(".")
        if len(token) > MAX_PAGE_TOKEN or not hmac.compare_digest(
            mac.encode("utf-8", "surrogatepass"), self._mac(cursor).encode()
        ):
            raise InvalidPageToken(
                "is not a page token this service issued: start again without it"
            )
        return cursor

    def _mac(self, cursor: str) -> str:
        digest = hmac.new(
            self._key, cursor.encode("utf-8", "surrogatepass"), hashlib.sha256
        ).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def query_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def iso(t: Any) -> str:
    """Timestamps as fixed-width text, so that text order is time order."""
    return str(t.isoformat(timespec="microseconds"))

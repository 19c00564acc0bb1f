"""Read-model storage shared by SQLite and PostgreSQL.

A view is a TrackingRecorder (SQLite or PostgreSQL) that also keeps rows. Each change of rows is
written in the same transaction as the tracking record of the event that caused it, so an event
is applied exactly once, whatever crashes or replays happen. Statements are written once: `{t}`
stands before a table name (on PostgreSQL: the schema and the view's prefix, as the views share
the database), `{p}` before the name of an index (the prefix alone), and `:name` parameters
become `%(name)s` for psycopg.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any, ClassVar

from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.postgres import PostgresTrackingRecorder

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
        with self.datastore.transaction(commit=True) as c:
            for statement, params in statements:
                c.execute(self.sql(statement), params)
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def fetch(self, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.sql(statement), params)
            return [dict(row) for row in c.fetchall()]

    def wait_until(
        self, application_name: str, notification_id: int | None, timeout: float
    ) -> None:
        """Blocks until the view has processed `notification_id`; TimeoutError after `timeout`.

        Polls with short sleeps first: an in-process projector usually catches up in milliseconds.
        """
        deadline = time.monotonic() + timeout
        pause = 0.002
        while not self.has_tracking_id(application_name, notification_id):
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"read model {type(self).__name__} has not caught up to event {notification_id}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

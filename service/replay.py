"""`autoimport replay --verify`: rebuilds the read model from every event into a scratch
location and compares it with the live one, row by row (design.md invariant 7).

A difference means a projection that is not deterministic, an event applied twice or lost, or
a view changed by hand: the report names the table, the row and the columns.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import psycopg
from psycopg import sql

from service.config import Settings
from service.projector import catch_up
from service.read_models import open_view
from service.read_models.views import VIEW_CLASSES, AccountViews, AccountViewsProjection
from service.stores import open_application

MAX_SHOWN = 20  # differences shown per table
CATCH_UP_TIMEOUT = 60.0
# Events per transaction of a rebuild: nobody reads the scratch views meanwhile, so larger
# batches than the live projector's only spare commits (a few MB of events in memory).
REBUILD_BATCH = 10_000


def verify(settings: Settings, out: TextIO) -> int:
    """0 when the rebuilt views equal the live ones, 1 (and the differences printed) otherwise."""
    app = open_application(settings)
    name = AccountViewsProjection.name
    live: AccountViews = open_view(AccountViewsProjection, VIEW_CLASSES, settings.store_env(name))
    try:
        with _scratch_env(settings, name) as scratch_env:
            rebuilt: AccountViews = open_view(AccountViewsProjection, VIEW_CLASSES, scratch_env)
            try:
                target, live_rows = _live_snapshot(app, live)
                projection = AccountViewsProjection(view=rebuilt)
                while catch_up(app, projection, batch=REBUILD_BATCH, until=target):
                    pass
                differences = _compare(
                    live_rows, {t: rebuilt.dump(t, k) for t, k in live.tables.items()}
                )
            finally:
                rebuilt.datastore.close()
    finally:
        live.datastore.close()
        app.close()
    if not differences:
        print(f"read model verified: rebuilt from events 1 to {target}, identical", file=out)
        return 0
    print(f"read model differs from a rebuild from events 1 to {target}:", file=out)
    for line in differences:
        print(f"  {line}", file=out)
    return 1


def _live_snapshot(app: Any, live: AccountViews) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    """The live tables at a position they hold still while they are read (a running projector
    may move them on: read again then)."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while True:
        target = app.recorder.max_notification_id() or 0
        live.wait_until(app.name, target, timeout=max(0.0, deadline - time.monotonic()))
        position = live.max_tracking_id(app.name) or 0
        rows = {table: live.dump(table, key) for table, key in live.tables.items()}
        if (live.max_tracking_id(app.name) or 0) == position:
            return position, rows
        if time.monotonic() > deadline:
            raise TimeoutError(
                "the live read model kept moving; try again when the service is quieter"
            )


def _compare(
    live: dict[str, list[dict[str, Any]]], rebuilt: dict[str, list[dict[str, Any]]]
) -> list[str]:
    differences: list[str] = []
    for table, live_rows in live.items():
        key = AccountViews.tables[table]
        expected = {row[key]: row for row in rebuilt[table]}
        found = {row[key]: row for row in live_rows}
        shown: list[str] = []
        for row_key in sorted(expected.keys() | found.keys()):
            if row_key not in found:
                shown.append(f"{table} {row_key}: missing from the live view")
            elif row_key not in expected:
                shown.append(f"{table} {row_key}: in the live view only")
            else:
                columns = [
                    c for c in expected[row_key] if expected[row_key][c] != found[row_key][c]
                ]
                for column in columns:
                    shown.append(
                        f"{table} {row_key}: {column} is {found[row_key][column]!r} live, "
                        f"{expected[row_key][column]!r} rebuilt"
                    )
        differences += shown[:MAX_SHOWN]
        if len(shown) > MAX_SHOWN:
            differences.append(f"{table}: {len(shown) - MAX_SHOWN} more differences")
    return differences


@contextmanager
def _scratch_env(settings: Settings, name: str) -> Iterator[dict[str, str]]:
    """A fresh, empty place for the rebuilt views, removed afterwards: another SQLite file, or
    another PostgreSQL schema."""
    scratch = f"replay_{uuid.uuid4().hex[:12]}"
    if not settings.uses_postgres:
        env = settings.store_env(scratch)
        try:
            yield env
        finally:
            for suffix in ("", "-wal", "-shm"):
                settings.data_dir.joinpath(f"{scratch}.sqlite{suffix}").unlink(missing_ok=True)
        return
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch)))
        try:
            yield {**settings.store_env(name, create_tables=True), "POSTGRES_SCHEMA": scratch}
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(scratch)))

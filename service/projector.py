"""Keeps the read models up to date: exactly one runner per view in the whole deployment.

A lease makes sure of "one": an advisory lock on PostgreSQL (held by a session, so it frees itself
when the holder dies, and within AUTOIMPORT_LEASE_TIMEOUT when it stops: service/leases.py), a
file lock in the data directory on SQLite. Every server process may start a projector; the one
that holds a view's lease runs it, the others wait to take over. A run ends when its lease is
lost; a batch it had begun is fenced by `catch_up`, which applies a batch only from the position
the view still has.

The projector reads `select_notifications` from the view's last tracking id and applies them
in batches, one transaction per batch. eventsourcing's ProjectionRunner (which cannot follow an
SQLite store in 9.5) commits once per event: on PostgreSQL that kept up with about 1,400 events
a second, and left the read model a minute behind a 100,000-row CSV import. Between batches it
waits for PostgreSQL's NOTIFY of new events, or on SQLite for a nudge after a save (from the
same process, or from the server whose child it is: service/projector_process.py), and polls,
for saves by other processes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from psycopg import sql

from service.application import AutoImports
from service.config import Settings
from service.errors import STORE_ERRORS
from service.leases import LeaseLost, advisory_lease, file_lease, lock_key
from service.read_models import PROJECTIONS, open_view
from service.stores import open_application, prepare_store

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5  # seconds between polls on SQLite when nothing wakes the projector
RETRY_INTERVAL = 1.0  # seconds between attempts to take a lease, or to restart after an error
MAX_PAUSE = 30.0  # seconds: the longest pause between restarts of a crashing projection
BATCH = 500


class ProjectionStuck(Exception):
    """A batch of events the projection could not apply: the view stays where it was."""


class Projector:
    def __init__(
        self,
        settings: Settings,
        app: AutoImports | None = None,
        on_health: Callable[[str | None], None] | None = None,
    ):
        """`on_health(failure)`: told when the projection starts failing (what fails, and
        where) and when it recovers (None), e.g. to turn a health status NOT_SERVING."""
        self._settings = settings
        self._app = app
        self._on_health = on_health
        self._stopping = threading.Event()
        self._wakes: list[threading.Event] = []
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.failure: str | None = None  # why the read model is not advancing, while it is not

    def start(self) -> None:
        for projection, view_classes in PROJECTIONS:
            thread = threading.Thread(
                target=self._supervise,
                args=(self._run, projection, view_classes),
                name=f"projector-{projection.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def nudge(self, *_: Any) -> None:
        """New events were saved (in this process, or in the server whose child this process
        is): process them now rather than at the next poll."""
        for wake in self._wakes:
            wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self.nudge()
        for thread in self._threads:
            thread.join(timeout=10)

    def run_forever(self) -> None:
        self.start()
        while not self._stopping.wait(0.2):  # short steps, so that signals get handled
            pass

    def _supervise(self, target: Any, projection: type[Projection[Any]], view_classes: Any) -> None:
        """Runs a view until stopped; a crashed run restarts from its last tracking record, after
        a pause that doubles while it keeps crashing (the database may be down)."""
        pause = RETRY_INTERVAL
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                target(projection, view_classes)
            except Exception as e:
                self.errors.append(e)
                # Loud, not silent: every read waits for this view, so they all answer
                # UNAVAILABLE until it moves again.
                pause = RETRY_INTERVAL if time.monotonic() - started > MAX_PAUSE else pause
                log.error(
                    "projection %s is stuck and restarts in %.1f s: %s",
                    projection.name,
                    pause,
                    e,
                    # One line when the store failed (a full disk, a database restarting): a
                    # traceback each retry would bury it; a bug's traceback says where.
                    exc_info=not isinstance(e.__cause__ or e, STORE_ERRORS),
                )
                self._health(f"projection {projection.name} is stuck: {e}")
                self._stopping.wait(pause)
                pause = min(pause * 2, MAX_PAUSE)

    def _run(self, projection_class: type[Projection[Any]], view_classes: Any) -> None:
        """Takes the view's lease, then keeps the view caught up until stopped."""
        with self._lease(projection_class) as lease, contextlib.ExitStack() as resources:
            if not lease:
                return
            app = self._app
            if app is None:
                app = open_application(self._settings)
                resources.callback(app.close)
            view = open_view(
                projection_class, view_classes, self._settings.store_env(projection_class.name)
            )
            resources.callback(view.datastore.close)
            projection = projection_class(view=view)
            wait = self._waiter(lease, app, resources)
            log.info("projecting %s", projection_class.name)
            try:
                while not self._stopping.is_set() and not lease.lost:
                    applied = catch_up(app, projection)
                    self._health(None)
                    if applied < BATCH:
                        wait()
            except LeaseLost as e:  # a batch fenced off: another runner moved the view on
                log.warning("projection %s stopped: %s", projection_class.name, e)
                return
            if lease.lost:
                log.warning("projection %s stopped: %s", projection_class.name, lease.reason)

    def _health(self, failure: str | None) -> None:
        if failure != self.failure:
            if failure is None:
                log.info("the read model advances again (it was: %s)", self.failure)
            self.failure = failure
            if self._on_health is not None:
                self._on_health(failure)

    def _lease(self, projection_class: type[Projection[Any]]) -> Any:
        if self._settings.uses_postgres:
            return advisory_lease(
                self._settings.database_url,
                lease_name(self._settings, projection_class),
                self._stopping,
                RETRY_INTERVAL,
                ttl=self._settings.lease_timeout,
            )
        lock_path = self._settings.data_dir / f"{projection_class.name}.lock"
        return file_lease(lock_path, self._stopping, RETRY_INTERVAL)

    def _waiter(self, lease: Any, app: AutoImports, resources: contextlib.ExitStack) -> Any:
        """How to wait for new events: on PostgreSQL, for the NOTIFY that every insert of
        events sends (on the lease's session, whose loss then ends the run); on SQLite, for a
        save in this process or the next poll."""
        if self._settings.uses_postgres:
            channel = app.recorder.channel_name  # type: ignore[attr-defined]
            session = lease.connection

            def on_the_session(use: Any) -> None:
                try:
                    use()
                except psycopg.Error as e:  # the session ended, or the heartbeat closed it
                    lease.mark_lost(f"its database session failed ({' '.join(str(e).split())})")

            on_the_session(
                lambda: session.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            )

            def wait_for_notification() -> None:
                on_the_session(lambda: list(session.notifies(timeout=POLL_INTERVAL, stop_after=1)))

            return wait_for_notification
        wake = threading.Event()
        self._wakes.append(wake)
        resources.callback(self._wakes.remove, wake)

        def wait_for_wake() -> None:
            wake.wait(POLL_INTERVAL)
            wake.clear()

        return wait_for_wake


def lease_name(settings: Settings, projection_class: type[Projection[Any]]) -> str:
    """The name of a view's lease on PostgreSQL (its advisory lock is lock_key of it)."""
    return f"autoimport-projector/{settings.database_schema}.{projection_class.name}"


def catch_up(
    app: AutoImports, projection: Projection[Any], batch: int = BATCH, until: int | None = None
) -> int:
    """Processes the events the view has not seen yet, up to `batch` of them and not beyond
    notification `until`; returns how many. Raises LeaseLost, applying nothing, if the view
    moved on since this batch read its position (another runner took over meanwhile)."""
    view = projection.view
    position = view.max_tracking_id(app.name) or 0
    notifications = app.recorder.select_notifications(start=position + 1, limit=batch, stop=until)
    try:
        with view.batch():  # one commit for the batch: a sync page is hundreds of events
            _fence(view, app.name, position)
            # Bound once: each lookup of a singledispatchmethod builds a new wrapper.
            process_event, to_domain_event = projection.process_event, app.mapper.to_domain_event
            for notification in notifications:
                process_event(to_domain_event(notification), Tracking(app.name, notification.id))
    except LeaseLost:
        raise
    except Exception as e:
        where = f"events {notifications[0].id} to {notifications[-1].id}" if notifications else ""
        topics = sorted({n.topic.rpartition(":")[2] for n in notifications})
        raise ProjectionStuck(
            f"cannot apply {where} after event {position} ({', '.join(topics)}): {e!r}"
        ) from e
    return len(notifications)


def _fence(view: Any, application_name: str, position: int) -> None:
    """Refuses a batch that does not continue from the view's position, checked in the batch's
    transaction under a lock that serialises batches. Two runners (one that lost its lease and
    woke, one that took over) may read batches from the same position: the tracking row refuses
    the second to commit only if it ends no further than the first, else it would apply the
    first's events again."""
    on_postgres = isinstance(view, PostgresTrackingRecorder)
    if not on_postgres:
        return  # SQLite: one process, whose file lease is never lost
    table = f'"{view.datastore.schema}"."{view.tracking_table_name}"'
    view.fetch(
        "SELECT 1 AS locked FROM pg_advisory_xact_lock(:key)",
        {"key": lock_key(f"autoimport-batch/{table}/{application_name}")},
    )
    rows = view.fetch(
        f"SELECT MAX(notification_id) AS n FROM {table} WHERE application_name = :name",
        {"name": application_name},
    )
    now = (rows[0]["n"] if rows else None) or 0
    if now != position:
        raise LeaseLost(
            f"the view is at event {now}, not {position} where this batch began: another "
            "runner applied events meanwhile"
        )


def run_projector(settings: Settings) -> None:
    """`autoimport projector`: runs every view until SIGTERM or SIGINT."""
    import signal

    prepare_store(settings)
    projector = Projector(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: projector._stopping.set())
    print("autoimport projector running", flush=True)
    projector.run_forever()
    projector.stop()

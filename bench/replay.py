"""Rebuilding the read model from 1,000,000 events, next to reading the same events with the
recorder's select_notifications alone.

Method: a fresh store per store kind gets --replay-events events, written as fast as the
machine allows yet as the application writes them: Contact aggregates of 10 accounts (each
account's Account aggregate first), made by domain/contact.py's `Contact.add`, every fifth one
also changed once (an Updated event), each event turned into its stored form by the
application's own mapper (JSON, zlib, AES: what `app.save` stores) in worker processes, and
inserted in batches of some 6,000 by the application's recorder. No projector runs meanwhile,
so the read model is empty: what `autoimport replay` rebuilds into (service/replay.py).
- Rebuild: the read model's projection caught up from the first event to the last with
  service.projector.catch_up (replay's loop: batches of projector.BATCH events, each decoded
  and applied in one transaction), timed until it holds the last event.
- Baseline, just before on the same store: the same events read with
  `app.recorder.select_notifications` in batches of the same size, nothing decoded.
Default sizes: 1,000,000 events on SQLite (the main store), 100,000 on PostgreSQL (a million
would add some three minutes of writing and as many of rebuilding: too long for `make bench`);
--replay-events sets both. Target (issue 11): a rebuild at most 3 x the bare read.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from eventsourcing.persistence import StoredEvent

from bench import cli
from bench.report import Figure, Target, log
from domain.contact import Contact, ContactValues
from service.application import AutoImports
from service.config import Settings
from service.projector import BATCH, catch_up
from service.read_models import open_view
from service.read_models.views import VIEW_CLASSES, AccountViewsProjection
from service.stores import open_application
from tests.support import store_env

NAME = "replay"
EVENTS = {"sqlite": 1_000_000, "postgres": 100_000}
QUICK_EVENTS = 20_000
ACCOUNTS = 10
CHANGED_EVERY = 5  # every fifth contact is also updated once
CONTACTS_PER_TASK = 5_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument(
        "--replay-events",
        type=int,
        help="events to rebuild from, on every store (1,000,000 on SQLite, 100,000 on PostgreSQL)",
    )


# -- writing the events, in worker processes ---------------------------------------------------

_app: AutoImports | None = None  # a worker's application: its mapper only


def _start_worker(env: dict[str, str]) -> None:
    global _app
    _app = AutoImports(env)


def _stored_events(first: int) -> list[StoredEvent]:
    """The stored events of contacts first .. first + CONTACTS_PER_TASK - 1: each one's Created,
    then the Updated of every fifth."""
    assert _app is not None
    contacts = [
        Contact.add(
            f"bench-{n % ACCOUNTS}",
            f"person{n:07d}@example.com",
            ContactValues(f"First{n}", f"Last{n}", fields={"%CITY%": f"City {n % 50}"}),
            list_ids=["list-1"],
            tags=["imported"],
            source="csv:bench",
        )
        for n in range(first, first + CONTACTS_PER_TASK)
    ]
    for n, contact in enumerate(contacts, first):
        if n % CHANGED_EVERY == 0:
            values = ContactValues(f"Renamed{n}", phone=f"+3361234{n % 10000:04d}")
            changes = contact.changes_from(values, list_ids=[], tags=[], source="sync:bench")
            contact.merge(changes, source="sync:bench")
    events = [e for contact in contacts for e in contact.collect_events()]
    events.sort(key=lambda e: e.originator_version)  # every Created, then the Updated ones
    return [_app.mapper.to_stored_event(e) for e in events]


def write_events(app: AutoImports, env: dict[str, str], count: int) -> None:
    for account in range(ACCOUNTS):
        app.upsert_account(f"bench-{account}", "bulk", 10**7, actor="bench")
    written = app.recorder.max_notification_id() or 0
    # c contacts make c + ceil(c / CHANGED_EVERY) events: enough tasks for what is left.
    contacts = -(-(count - written) * CHANGED_EVERY // (CHANGED_EVERY + 1))
    tasks = range(0, contacts + CONTACTS_PER_TASK, CONTACTS_PER_TASK)
    # spawn, not fork: this process has gRPC and database threads of earlier benchmarks.
    context = multiprocessing.get_context("spawn")
    workers = os.cpu_count() or 1
    with context.Pool(workers, initializer=_start_worker, initargs=(env,)) as pool:
        for stored in pool.imap(_stored_events, tasks):
            stored = stored[: count - written]
            app.recorder.insert_events(stored)
            written += len(stored)
            if written >= count:
                break


# -- measuring ---------------------------------------------------------------------------------


def read_bare(app: AutoImports, last: int) -> float:
    """Seconds to read every notification up to `last`, as the rebuild's batches do."""
    start, position, read = time.perf_counter(), 0, 0
    while batch := app.recorder.select_notifications(start=position + 1, limit=BATCH, stop=last):
        position = batch[-1].id
        read += len(batch)
    elapsed = time.perf_counter() - start
    if read != last:
        raise RuntimeError(f"read {read} notifications of {last}")
    return elapsed


def rebuild(app: AutoImports, settings: Settings, last: int) -> float:
    """Seconds for the (empty) read model to catch up to event `last`, as replay does."""
    view: Any = open_view(
        AccountViewsProjection, VIEW_CLASSES, settings.store_env(AccountViewsProjection.name)
    )
    try:
        if view.max_tracking_id(app.name):
            raise RuntimeError("the read model is not empty")
        projection = AccountViewsProjection(view=view)
        start = time.perf_counter()
        while catch_up(app, projection, until=last):
            pass
        elapsed = time.perf_counter() - start
        if (view.max_tracking_id(app.name) or 0) != last:
            raise RuntimeError("the rebuild stopped before the last event")
    finally:
        view.datastore.close()
    return elapsed


def bench_store(store: str, count: int) -> Figure:
    with (
        tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp,
        store_env(store, Path(tmp)) as env,
    ):
        settings = Settings.from_env(env)
        app = open_application(settings)
        try:
            start = time.perf_counter()
            write_events(app, settings.store_env("events"), count)
            writing = time.perf_counter() - start
            last = app.recorder.max_notification_id() or 0
            log(f"replay {store}: {last:,} events written in {writing:.0f} s")
            bare = read_bare(app, last)
            rebuilt = rebuild(app, settings, last)
            log(f"replay {store}: read in {bare:.1f} s, rebuilt in {rebuilt:.1f} s")
        finally:
            app.close()
    return Figure(
        NAME,
        f"rebuild the read model from {last:,} events",
        store,
        rebuilt,
        "s",
        "select_notifications alone",
        bare,
        Target.ratio_at_most(3.0),
        {
            "events": last,
            "events_per_second": last / rebuilt,
            "writing_seconds": writing,
            "batch": BATCH,
        },
    )


def run(args: argparse.Namespace) -> list[Figure]:
    return [
        bench_store(store, args.replay_events or (QUICK_EVENTS if args.quick else EVENTS[store]))
        for store in args.stores
    ]


if __name__ == "__main__":
    sys.exit(cli.main(sys.modules[__name__], "python -m bench.replay", sys.argv[1:]))

"""Syncs through TriggerSync from each emulator on loopback: a 500-contact first sync and an
incremental one with 10 changed contacts, each next to the floor of reading the same pages
with plain httpx and inserting them with sqlite3.executemany.

Method: each service's emulator (emulators/, driven through its contract harness:
bench/emulated.py) runs alone in a subprocess on loopback, holding --sync-contacts contacts
(500: one sync window's budget, so one TriggerSync is the whole first sync). Per store, one real
server (`autoimport serve` in a subprocess, as the tests start it) reads all four.
- First sync: a fresh account and import of the emulated account, TriggerSync timed until its
  report (every contact added).
- Incremental sync: one import per service, synced once fully first (in the previous window, so
  that the window's budget is whole again); then, each run, --sync-changed contacts change at
  the source (past the connector's lag) and TriggerSync of that import is timed.
- The floor, right after each sync: the requests for pages of contacts that the sync made (as
  the emulator recorded them, answered 200) sent again in order with a plain httpx client (made
  once, beforehand), the email and names of each record taken from the JSON, and inserted with
  one sqlite3.executemany into a WAL-mode file (INSERT OR REPLACE by email: the incremental
  ones update the first sync's rows) and one commit. The connector's other requests (a token
  refresh, Mailchimp's account check and merge fields) and its pacing count in the sync, not in
  the floor.
  HubSpot allows 5 searches a second: its floor starts and ends with a quiet second, so that
  neither reader is throttled by the other's requests.
Each row is the median of --sync-runs runs, after the warm-up of the incremental imports' first
syncs. Target (issue 11): a first sync at most 2 x its floor.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from autoimport.v1 import imports_pb2
from bench import cli
from bench.report import ROOT, Figure, Target, log, stop_child
from connectors import SOURCES, google_contacts, hubspot, shopify
from tests.connectors.contract import harness_of
from tests.support import Client, ServerProcess, create_in_new_account, store_env

NAME = "sync"
SERVICES = ("google_contacts", "shopify", "hubspot", "mailchimp")
CONTACTS = 500
CHANGED = 10
FLOOR = "same pages: httpx + executemany"
QUIET = {"hubspot": 1.1}  # seconds: a rate limit per second
HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding"}

Row = tuple[str, str, str]  # email, first name, last name


def _mailchimp_page(path: str) -> bool:
    return path.startswith("/3.0/lists/") and path.endswith("/members")


def _google_rows(body: Any) -> list[Row]:
    rows = []
    for person in body.get("connections", []):
        emails, names = person.get("emailAddresses") or [], person.get("names") or [{}]
        if emails:
            rows.append(
                (emails[0]["value"], names[0].get("givenName", ""), names[0].get("familyName", ""))
            )
    return rows


# Per service: which requests read a page of contacts, and the rows of a page's JSON.
PAGES: dict[str, tuple[Callable[[str], bool], Callable[[Any], list[Row]]]] = {
    "google_contacts": (lambda path: path == google_contacts.PATH, _google_rows),
    "shopify": (
        lambda path: path == shopify.PATH,
        lambda body: [
            (c["email"], c.get("first_name") or "", c.get("last_name") or "")
            for c in body["customers"]
            if c.get("email")
        ],
    ),
    "hubspot": (
        lambda path: path == hubspot.SEARCH_PATH,
        lambda body: [
            (p["email"], p.get("firstname") or "", p.get("lastname") or "")
            for p in (r["properties"] for r in body["results"])
            if p.get("email")
        ],
    ),
    "mailchimp": (
        _mailchimp_page,
        lambda body: [
            (
                m["email_address"],
                m["merge_fields"].get("FNAME", ""),
                m["merge_fields"].get("LNAME", ""),
            )
            for m in body["members"]
            if m.get("email_address")
        ],
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--sync-runs", type=int, help="runs of each sync, the median is shown (3)")
    group.add_argument("--sync-contacts", type=int, help=f"contacts per source ({CONTACTS})")
    group.add_argument("--sync-changed", type=int, help=f"changed per incremental ({CHANGED})")


# -- the emulators, each in a subprocess ------------------------------------------------------


@dataclass
class Source:
    service: str
    process: subprocess.Popen[str]
    url: str
    server_env: dict[str, str]
    import_message: imports_pb2.AutoImport
    # The floor's client, made once: making an httpx client costs tens of milliseconds (its
    # TLS context), more than reading a page on loopback.
    client: httpx.Client

    def ask(self, command: str) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.service} emulator stopped")
        return json.loads(line)

    def pages_read(self) -> list[dict[str, Any]]:
        """The requests for pages of contacts answered since the last call."""
        is_page = PAGES[self.service][0]
        return [r for r in self.ask("requests") if is_page(r["path"]) and r["status"] == 200]


@contextlib.contextmanager
def source(service: str, contacts: int) -> Iterator[Source]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.emulated", service, str(contacts)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {service} emulator did not start")
        hello = json.loads(line)
        message = imports_pb2.AutoImport.FromString(base64.b64decode(hello["import"]))
        with httpx.Client(base_url=hello["url"]) as client:
            yield Source(service, process, hello["url"], hello["server_env"], message, client)
    finally:
        stop_child(process)


# -- the floor ----------------------------------------------------------------------------------


def floor(source: Source, requests: list[dict[str, Any]], db_path: Path) -> tuple[float, float]:
    """Seconds to send `requests` again with plain httpx and insert their rows, and of that the
    reading."""
    rows_of = PAGES[source.service][1]
    time.sleep(QUIET.get(source.service, 0.0))
    start = time.perf_counter()
    rows: list[Row] = []
    for r in requests:
        headers = [(k, v) for k, v in r["headers"] if k.lower() not in HOP_BY_HOP]
        body = r["body"]
        response = source.client.request(
            r["method"],
            r["path"],
            params=r["params"],
            headers=headers,
            content=None if body == "" else json.dumps(body).encode(),
        )
        response.raise_for_status()
        rows += rows_of(response.json())
    read = time.perf_counter() - start
    db = sqlite3.connect(db_path)
    try:
        db.execute("PRAGMA journal_mode=WAL")  # as the service's SQLite store
        db.execute(
            "CREATE TABLE IF NOT EXISTS contacts"
            " (email TEXT PRIMARY KEY, first_name TEXT, last_name TEXT)"
        )
        db.executemany("INSERT OR REPLACE INTO contacts VALUES (?, ?, ?)", rows)
        db.commit()
    finally:
        db.close()
    elapsed = time.perf_counter() - start
    source.ask("requests")  # the floor's own: not the next sync's
    time.sleep(QUIET.get(source.service, 0.0))
    return elapsed, read


# -- the syncs ----------------------------------------------------------------------------------


@dataclass
class Run:
    sync: float
    floor: float
    floor_reading: float  # of the floor, the HTTP requests and decoding
    fetched: int
    pages: int


def timed_sync(client: Client, name: str) -> tuple[float, imports_pb2.SyncReport]:
    start = time.perf_counter()
    report = client.imports.TriggerSync(imports_pb2.TriggerSyncRequest(name=name), timeout=120)
    return time.perf_counter() - start, report


def check(report: imports_pb2.SyncReport, **expected: int) -> None:
    if report.outcome != imports_pb2.SyncReport.COMPLETED or any(
        getattr(report, k) != v for k, v in expected.items()
    ):
        raise RuntimeError(f"the sync did not do what was expected ({expected}): {report}")


def bench_store(
    store: str, sources: dict[str, Source], runs: int, contacts: int, changed: int, folder: Path
) -> list[Figure]:
    interval = max(harness_of(s).interval for s in sources)  # the longest any harness needs
    first: dict[str, list[Run]] = {s: [] for s in sources}
    incremental: dict[str, list[Run]] = {s: [] for s in sources}
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(store_env(store, folder / store))
        for s in sources.values():
            env = {**env, **s.server_env}
        server = stack.enter_context(
            ServerProcess({**env, "AUTOIMPORT_SYNC_INTERVAL": f"{interval:g}"})
        )
        admin = stack.enter_context(server.client(server.admin_token))
        kept: dict[str, str] = {}  # service -> the import synced incrementally
        for service, s in sources.items():
            kept[service] = create_in_new_account(admin, s.import_message, 10**6).name
            _, report = timed_sync(admin, kept[service])  # also the warm-up
            check(report, added=contacts)
            floor(s, s.pages_read(), folder / f"{store}-{service}-kept.db")
        full_window = int(time.time() // interval)
        for run in range(runs):
            log(f"sync {store}: first syncs, run {run + 1} of {runs}")
            for service, s in sources.items():
                name = create_in_new_account(admin, s.import_message, 10**6).name
                seconds, report = timed_sync(admin, name)
                check(report, added=contacts)
                pages = s.pages_read()
                floored = floor(s, pages, folder / f"{store}-{service}-{run}.db")
                first[service].append(Run(seconds, *floored, report.fetched, len(pages)))
        # The first syncs of the kept imports used their window's whole budget.
        time.sleep(max(0.0, (full_window + 1) * interval + 0.1 - time.time()))
        for run in range(runs):
            log(f"sync {store}: incremental syncs, run {run + 1} of {runs}")
            for s in sources.values():
                s.ask(f"change {changed}")
            for s in sources.values():
                s.ask("settle")
            for service, s in sources.items():
                seconds, report = timed_sync(admin, kept[service])
                check(report, updated=changed)
                pages = s.pages_read()
                floored = floor(s, pages, folder / f"{store}-{service}-kept.db")
                incremental[service].append(Run(seconds, *floored, report.fetched, len(pages)))
    figures = []
    for service in sources:
        name = SOURCES[service].display_name
        for work, results, target in (
            (f"first sync, {contacts} contacts, {name}", first[service], Target.ratio_at_most(2)),
            (f"incremental sync, {changed} changed, {name}", incremental[service], None),
        ):
            figures.append(
                Figure(
                    NAME,
                    work,
                    store,
                    statistics.median(r.sync for r in results),
                    "s",
                    FLOOR,
                    statistics.median(r.floor for r in results),
                    target,
                    {
                        "runs": [vars(r) for r in results],
                        "fetched": statistics.median(r.fetched for r in results),
                        "pages": statistics.median(r.pages for r in results),
                    },
                )
            )
    return figures


def run(args: argparse.Namespace) -> list[Figure]:
    runs = args.sync_runs or (1 if args.quick else 3)
    contacts = args.sync_contacts or (100 if args.quick else CONTACTS)
    changed = args.sync_changed or CHANGED
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        sources = {s: stack.enter_context(source(s, contacts)) for s in SERVICES}
        return [
            f
            for store in args.stores
            for f in bench_store(store, sources, runs, contacts, changed, Path(tmp))
        ]


if __name__ == "__main__":
    sys.exit(cli.main(sys.modules[__name__], "python -m bench.sync", sys.argv[1:]))

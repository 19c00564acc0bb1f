"""The scheduler's capacity: how many imports one node (one server and one `autoimport scheduler`)
keeps synced within one sync window, for full windows and for incremental ones.

Method: the connectors' emulators (emulators/) run in a subprocess on loopback, one external
account per import (Shopify shops, HubSpot portals and Google Contacts owners in turn, behind
one URL per service: tests/test_scale_out.py's `Tenants`), each holding --scheduler-contacts
contacts (500: a whole window's budget). The server runs in this process (`build_server`, real
gRPC on a loopback socket) on each store, its connectors wrapped to time each sync's
`fetch_page` calls; `autoimport scheduler` runs in a subprocess against it, with
--scheduler-concurrency syncs in flight (default: the scheduler's own, 4; "4,8" measures both),
no jitter (jitter spreads a window's syncs on purpose; it is no measure of capacity) and a round
every 0.2 s.

- Full windows: --scheduler-imports fresh imports, all due at once when the scheduler starts;
  each sync reads and saves its 500 contacts. Timed from the first sync's start to the last
  one's end.
- Incremental windows: then --scheduler-changed contacts change in every external account, the
  server is restarted with an interval short enough that every import is due at once (and long
  enough that none is due again before the last has synced), and the scheduler syncs each once
  more.

The throughput over the sample (imports per second) is extrapolated to one 1,800 s window:
imports per 30 minutes that the node keeps synced, if the scheduler is kept busy. Where the
time goes (a row's details), as shares of the scheduler's slots (concurrency x elapsed): in the
connector (making it and its HTTP client, requests, decoding, its own rate-limit pacing), the
service's own (loading, deciding, saving the events; the rest of the time between the
connector's creation and its close), and waiting (a slot held by no sync: gRPC, the sync lease,
the scheduler's rounds, triggers of imports found not due).

Baseline, in the same run and the same process: the same number of imports of the same external
accounts (in other accounts, paused while the scheduler runs) synced through the SyncEngine
in-process, as many at once as the scheduler's concurrency, without gRPC or scheduler; the
ratio is the node's imports per window over the baseline's. A row's "read each" is what each
sync read: an incremental one reads the changed contacts and those sharing the cursor's
timestamp. Targets (issue 11), absolute: at least 10,000 full windows and 100,000 incremental
ones per node.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import connectors
from autoimport.v1 import accounts_pb2, imports_pb2
from bench import cli
from bench.report import Figure, Target, log, stop_child
from connectors.base import Connector, ConnectorFactory
from domain.auto_import import AutoImport
from domain.sources import Criteria
from domain.sync import ContactPage
from domain.sync_report import SyncReport
from service.config import Settings
from service.scheduler import CONCURRENCY
from service.server import Server, build_server, sync_leases
from service.sync import SyncEngine
from tests.support import Client, store_env

NAME = "scheduler"
ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "adm_bench_token"
WINDOW = 1800.0  # seconds: the default AUTOIMPORT_SYNC_INTERVAL
SERVICES = ("shopify", "hubspot", "google_contacts")
SHOPIFY_LAG = 7.0  # seconds: a Shopify change is read once its updated_at is past the lag (5 s)
MIN_INTERVAL = 8.0  # seconds: the shortest interval of the incremental phase
HOUR = timedelta(hours=1)
# Issue 11's targets, absolute: imports one node keeps synced per window of 500 contacts each,
# and of 10 changed contacts each.
TARGETS = {"full": Target.value_at_least(10_000), "incremental": Target.value_at_least(100_000)}


# -- the emulators, in a subprocess ---------------------------------------------------------


def emulate(imports: int, contacts: int) -> None:
    """`python -m bench.scheduler --emulate IMPORTS CONTACTS`: serves `imports` external accounts
    of `contacts` contacts each; prints what
    the server and the imports need as one JSON line, then obeys `change N` lines on stdin
    (N contacts of every account change; answers `changed`) until stdin closes."""
    from emulators.google_contacts import GoogleContactsEmulator
    from emulators.hubspot import HubSpotEmulator
    from emulators.shopify import ShopifyEmulator
    from tests.test_scale_out import Tenants, google_key, hubspot_key, shopify_key

    fronts = {
        "shopify": Tenants(shopify_key),
        "hubspot": Tenants(hubspot_key),
        "google_contacts": Tenants(google_key),
    }
    accounts: list[dict[str, str]] = []
    changers = []
    for n in range(imports):
        service = SERVICES[n % len(SERVICES)]
        if service == "shopify":
            shop = ShopifyEmulator(shop=f"bench-shop-{n}", access_token=f"shpat_bench_{n}")
            ids = shop.add_customers(contacts)
            fronts[service].add(shop, shop.access_token)
            accounts.append(
                {"service": service, "external_account": shop.shop, "token": shop.access_token}
            )
            changers.append(
                lambda k, r, shop=shop, ids=ids: [
                    shop.update(i, first_name=f"Changed{r}") for i in ids[:k]
                ]
            )
        elif service == "hubspot":
            portal = HubSpotEmulator(portal_id=str(30_000_000 + n), access_token=f"pat-b-{n}")
            # Modified an hour apart, the last a day ago, as in a portal in use: an incremental
            # sync re-reads the 10 minutes before the previous one's cursor (LOOKBACK).
            contact_ids = portal.add_contacts(
                contacts, modified_at=datetime.now(UTC) - HOUR * (contacts + 24), ties=1, step=HOUR
            )
            fronts[service].add(portal, f"Bearer {portal.access_token}")
            accounts.append(
                {
                    "service": service,
                    "external_account": portal.portal_id,
                    "token": portal.access_token,
                }
            )
            changers.append(
                lambda k, r, portal=portal, ids=contact_ids: [
                    portal.update(i, firstname=f"Changed{r}") for i in ids[:k]
                ]
            )
        else:
            owner = GoogleContactsEmulator()
            names = owner.add_people(contacts)
            fronts[service].add(owner, owner.access_token, owner.refresh_token)
            accounts.append(
                {
                    "service": service,
                    "external_account": f"owner-{n}@example.com",
                    "token": owner.access_token,
                    "refresh_token": owner.refresh_token,
                }
            )
            changers.append(
                lambda k, r, owner=owner, names=names: [
                    owner.update(name, given_name=f"Changed{r}") for name in names[:k]
                ]
            )
    with contextlib.ExitStack() as stack:
        for front in fronts.values():
            stack.enter_context(front)
        env = {
            "AUTOIMPORT_SHOPIFY_URL": fronts["shopify"].url,
            "AUTOIMPORT_HUBSPOT_URL": fronts["hubspot"].url,
            "AUTOIMPORT_GOOGLE_CONTACTS_URL": fronts["google_contacts"].url,
            "AUTOIMPORT_GOOGLE_OAUTH_URL": fronts["google_contacts"].url,
            "AUTOIMPORT_GOOGLE_CLIENT_ID": GoogleContactsEmulator.client_id,
            "AUTOIMPORT_GOOGLE_CLIENT_SECRET": GoogleContactsEmulator.client_secret,
        }
        print(json.dumps({"env": env, "accounts": accounts}), flush=True)
        for round_, line in enumerate(sys.stdin):
            count = int(line.split()[1])
            for change in changers:
                change(count, round_)
            print("changed", flush=True)


@dataclass
class Emulators:
    process: subprocess.Popen[str]
    env: dict[str, str]
    accounts: list[dict[str, str]]

    def change(self, count: int) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"change {count}\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "changed":
            raise RuntimeError("the emulators did not change the contacts")


@contextlib.contextmanager
def emulators(imports: int, contacts: int) -> Iterator[Emulators]:
    command = [sys.executable, "-m", "bench.scheduler", "--emulate", str(imports), str(contacts)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the emulators did not start")
        started = json.loads(line)
        yield Emulators(process, started["env"], started["accounts"])
    finally:
        stop_child(process)


# -- timing the syncs -----------------------------------------------------------------------


@dataclass
class Sync:
    import_id: UUID
    opened: float  # time.perf_counter() when the engine asked for the connector
    closed: float = 0.0
    fetching: float = 0.0  # seconds making the connector and inside fetch_page
    pages: int = 0


class TimedConnector:
    def __init__(self, inner: Connector, sync: Sync, recorder: Recorder):
        self._inner = inner
        self._sync = sync
        self._recorder = recorder
        self.lag = inner.lag

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
        start = time.perf_counter()
        try:
            return self._inner.fetch_page(criteria, cursor, until)
        finally:
            self._sync.fetching += time.perf_counter() - start
            self._sync.pages += 1

    def close(self) -> None:
        self._inner.close()
        self._recorder.closed(self._sync)


class Recorder:
    """A connector factory that records each sync: when its connector was made and closed, and
    the time spent in fetch_page. A connector closed without a page read was no sync (a
    scheduled trigger of an import found not due)."""

    def __init__(self, factory: ConnectorFactory):
        self._factory = factory
        self._changed = threading.Condition()
        self.syncs: list[Sync] = []
        self.not_syncs = 0

    def __call__(self, auto_import: AutoImport) -> Connector:
        sync = Sync(auto_import.id, time.perf_counter())
        inner = self._factory(auto_import)  # its HTTP client: the connector's time too
        sync.fetching = time.perf_counter() - sync.opened
        return TimedConnector(inner, sync, self)

    def closed(self, sync: Sync) -> None:
        sync.closed = time.perf_counter()
        with self._changed:
            if sync.pages:
                self.syncs.append(sync)
            else:
                self.not_syncs += 1
            self._changed.notify_all()

    def wait(self, imports: set[UUID], since: float, timeout: float) -> list[Sync]:
        """The first sync of each import that began after `since`, once each has ended."""

        def done() -> bool:
            return imports <= {s.import_id for s in self.syncs if s.opened >= since}

        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise RuntimeError(f"the imports were not all synced within {timeout:g} s")
            first: dict[UUID, Sync] = {}
            for sync in self.syncs:
                if sync.opened >= since and sync.import_id in imports:
                    first.setdefault(sync.import_id, sync)
            return list(first.values())


@dataclass
class Phase:
    """The syncs of one sample of imports, run `concurrency` at a time."""

    syncs: list[Sync]
    concurrency: int
    fetched: int = 0
    not_syncs: int = 0
    elapsed: float = field(init=False)

    def __post_init__(self) -> None:
        self.elapsed = max(s.closed for s in self.syncs) - min(s.opened for s in self.syncs)

    @property
    def per_import(self) -> float:
        return self.elapsed / len(self.syncs)

    @property
    def per_window(self) -> float:
        return WINDOW / self.per_import

    def shares(self) -> tuple[float, float, float]:
        """Connector, service, waiting: shares of concurrency x elapsed."""
        slots = self.concurrency * self.elapsed
        connector = sum(s.fetching for s in self.syncs)
        inside = sum(s.closed - s.opened for s in self.syncs)
        return connector / slots, (inside - connector) / slots, max(0.0, 1 - inside / slots)


# -- one node -------------------------------------------------------------------------------


@contextlib.contextmanager
def scheduler(server: Server, interval: float, concurrency: int) -> Iterator[None]:
    env = {
        **os.environ,
        "AUTOIMPORT_ADDRESS": server.address,
        "AUTOIMPORT_TOKEN": ADMIN_TOKEN,
        "AUTOIMPORT_SYNC_INTERVAL": f"{interval:g}",
        "AUTOIMPORT_SCHEDULER_POLL": "0.2",
        "AUTOIMPORT_SCHEDULER_JITTER": "0",
        "AUTOIMPORT_SCHEDULER_CONCURRENCY": str(concurrency),
        "AUTOIMPORT_METRICS_LISTEN": "off",
        "AUTOIMPORT_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "scheduler"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.terminate()
        process.wait(30)


@dataclass
class Created:
    import_id: UUID
    account_id: str
    service: str


def import_of(account: dict[str, str]) -> imports_pb2.AutoImport:
    """An import of one emulated external account (as `emulate` describes them)."""
    return imports_pb2.AutoImport(
        service=account["service"],
        external_account=account["external_account"],
        credentials=imports_pb2.Credentials(
            access_token=account["token"], refresh_token=account.get("refresh_token", "")
        ),
    )


def create_imports(client: Client, source: Emulators, purpose: str) -> list[Created]:
    created = []
    for account in source.accounts:
        account_id = f"{purpose}-{uuid.uuid4().hex[:8]}"
        client.accounts.UpsertAccount(
            accounts_pb2.UpsertAccountRequest(
                account=accounts_pb2.Account(account_id=account_id, plan="p", contact_limit=10**7)
            )
        )
        reply = client.imports.CreateImport(
            imports_pb2.CreateImportRequest(account_id=account_id, auto_import=import_of(account))
        )
        created.append(Created(UUID(reply.name[-36:]), account_id, account["service"]))
    return created


def scheduled(
    server: Server, recorder: Recorder, imports: list[Created], interval: float, concurrency: int
) -> Phase:
    """Every import synced once by the scheduler, all due when it starts."""
    since = time.perf_counter()
    skipped = recorder.not_syncs
    with scheduler(server, interval, concurrency):
        syncs = recorder.wait({i.import_id for i in imports}, since, timeout=600)
    reports = [server.app.get_import(i.account_id, i.import_id).last_sync for i in imports]
    check(reports)
    fetched = sum(r.fetched for r in reports if r is not None)
    return Phase(syncs, concurrency, fetched=fetched, not_syncs=recorder.not_syncs - skipped)


def check(reports: Sequence[SyncReport | None]) -> None:
    failed = [r for r in reports if r is None or r.outcome != "COMPLETED" or not r.fetched]
    if failed:
        raise RuntimeError(f"{len(failed)} syncs did not complete, e.g. {failed[0]}")


def in_process(
    server: Server, settings: Settings, recorder: Recorder, imports: list[Created], concurrency: int
) -> Phase:
    """The baseline: every import synced once through the SyncEngine, `concurrency` at a time."""
    app = server.app
    for i in imports:
        app.resume_import(i.account_id, i.import_id, actor="bench")
    engine = SyncEngine(
        app, recorder, interval=settings.sync_interval, leases=sync_leases(settings)
    )
    since = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        reports = list(
            pool.map(lambda i: engine.trigger(i.account_id, i.import_id, actor="bench"), imports)
        )
    check(reports)
    for i in imports:
        app.pause_import(i.account_id, i.import_id, actor="bench")
    syncs = recorder.wait({i.import_id for i in imports}, since, timeout=60)
    return Phase(syncs, concurrency, fetched=sum(r.fetched for r in reports))


def settings_of(env: dict[str, str], interval: float, concurrency: int) -> Settings:
    return Settings.from_env(
        {
            **env,
            "AUTOIMPORT_MAX_SYNCS": str(max(8, concurrency)),  # the default, or enough
            "AUTOIMPORT_LISTEN": "127.0.0.1:0",
            "AUTOIMPORT_ADMIN_TOKEN": ADMIN_TOKEN,
            "AUTOIMPORT_METRICS_LISTEN": "off",
            "AUTOIMPORT_SYNC_INTERVAL": f"{interval:g}",
        }
    )


def measure(
    store: str, source: Emulators, changed: int, concurrency: int
) -> dict[str, tuple[Phase, Phase]]:
    """{"full": (node, baseline), "incremental": (node, baseline)} on one store."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp,
        store_env(store, Path(tmp)) as store_vars,
    ):
        env = {**store_vars, **source.env}
        settings = settings_of(env, WINDOW, concurrency)
        recorder = Recorder(connectors.factory(settings.connectors))
        server = build_server(settings, recorder)
        try:
            with Client(server.address, ADMIN_TOKEN) as client:
                node = create_imports(client, source, "node")
                baseline = create_imports(client, source, "base")
            for i in baseline:  # never due for the scheduler
                server.app.pause_import(i.account_id, i.import_id, actor="bench")
            full = scheduled(server, recorder, node, WINDOW, concurrency)
            full_base = in_process(server, settings, recorder, baseline, concurrency)
        finally:
            server.stop(grace=1)
        source.change(changed)
        changed_at = time.time()
        # Every node import due at once, and none due again before the last has synced.
        last_start = time.time() - (time.perf_counter() - max(s.opened for s in full.syncs))
        ready = max(changed_at + SHOPIFY_LAG, last_start + MIN_INTERVAL)
        time.sleep(max(0.0, ready - time.time()))
        interval = int(time.time() - last_start - 1.0)
        settings = settings_of(env, interval, concurrency)
        server = build_server(settings, recorder)
        try:
            incremental = scheduled(server, recorder, node, interval, concurrency)
            incremental_base = in_process(server, settings, recorder, baseline, concurrency)
        finally:
            server.stop(grace=1)
    return {"full": (full, full_base), "incremental": (incremental, incremental_base)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--scheduler-imports", type=int, help="imports in the sample (20)")
    group.add_argument("--scheduler-contacts", type=int, help="per external account (500)")
    group.add_argument("--scheduler-changed", type=int, help="changed per incremental (10)")
    group.add_argument(
        "--scheduler-concurrency",
        default=str(CONCURRENCY),
        help=f"the scheduler's syncs in flight, comma-separated (its default: {CONCURRENCY})",
    )


def run(args: argparse.Namespace) -> list[Figure]:
    imports = args.scheduler_imports or (6 if args.quick else 20)
    contacts = args.scheduler_contacts or (100 if args.quick else 500)
    changed = args.scheduler_changed or 10
    concurrencies = [int(c) for c in args.scheduler_concurrency.split(",")]
    figures = []
    with emulators(imports, contacts) as source:
        for store in args.stores:
            for concurrency in concurrencies:
                log(f"scheduler {store}: {imports} imports, {concurrency} in flight")
                results = measure(store, source, changed, concurrency)
                for window, (node, base) in results.items():
                    read = node.fetched / len(node.syncs)
                    connector, service, waiting = node.shares()
                    work = f"imports synced per 30 min, {window} windows ({read:.0f} read each)" + (
                        f", {concurrency} in flight" if len(concurrencies) > 1 else ""
                    )
                    target = TARGETS[window] if contacts == 500 and changed == 10 else None
                    figures.append(
                        Figure(
                            NAME,
                            work,
                            store,
                            node.per_window,
                            "imports",
                            "SyncEngine in-process, same syncs",
                            base.per_window,
                            target,
                            {
                                "imports": len(node.syncs),
                                "contacts": contacts,
                                "changed": changed,
                                "in_flight": concurrency,
                                "node_seconds": node.elapsed,
                                "baseline_seconds": base.elapsed,
                                "connector_share": connector,
                                "service_share": service,
                                "waiting_share": waiting,
                            },
                        )
                    )
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["--emulate"]:  # the emulators' subprocess (see `emulators`)
        emulate(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(cli.main(sys.modules[__name__], "python -m bench.scheduler", sys.argv[1:]))

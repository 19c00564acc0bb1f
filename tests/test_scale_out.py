"""Scale-out (issue 9, part 4): two server replicas and two `autoimport scheduler` processes on one
PostgreSQL database keep 200 imports synced once per interval, reading 199 external accounts
from the connectors' emulators over HTTP, with the invariants of design.md section 4 holding
and the read model caught up at the end.

The emulators serve one external account each, and a server has one base URL per service, so
each service's emulators sit behind a `Tenants` front that hands every request to the emulator
its credentials belong to (as the real services tell their accounts apart by token): every
external account keeps its own data, rate limit (Shopify's bucket, HubSpot's searches a second)
and tokens. 50 accounts of 4 imports each: two Shopify shops (whose customers share their
emails: two imports bringing the same contacts), a HubSpot portal and a Google Contacts owner;
account 0's two Shopify imports read one shop of 600 customers (one 500-contact budget shared by
two imports), and 5 accounts have a contact limit below what their sources hold.

On time, precisely: an import's scheduled syncs (from its ListSyncs) begin at least INTERVAL
apart and at most INTERVAL + ALLOWANCE apart, where ALLOWANCE = POLL + JITTER + QUEUEING: a
scheduler sees a due import within one poll, fires it within its jitter, and it may wait
QUEUEING behind the syncs in flight; and when the imports are last read none is more than
INTERVAL + ALLOWANCE past its last sync's start. A longer gap would be a missed or late window,
a shorter one a second sync in one interval. INTERVAL is chosen so that the first round (the 200
imports never synced, all due at once: about 18 s on a busy 2-CPU machine, with each scheduler
at 8 in flight) fits in one: a scheduler serves never-synced imports first, so a longer first
round would make the earliest imports' second syncs late by the excess.

Nothing sleeps to synchronise: every wait polls for a condition. The test waits for intervals
to pass, which is what it tests: about 75 s on a 2-CPU machine.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from autoimport.v1 import accounts_pb2 as apb
from autoimport.v1 import contacts_pb2 as cpb
from autoimport.v1 import contacts_pb2_grpc
from autoimport.v1 import imports_pb2 as pb
from connectors import SOURCES
from domain.external_account import CONTACTS_PER_WINDOW, ExternalAccount
from emulators.google_contacts import GoogleContactsEmulator
from emulators.hubspot import HubSpotEmulator
from emulators.server import Answer, LoopbackEmulator
from emulators.shopify import ShopifyEmulator
from service.config import Settings
from service.read_models import open_view
from service.read_models.views import VIEW_CLASSES, AccountViews, AccountViewsProjection
from service.stores import open_application
from tests.support import ROOT, Client, ServerProcess, all_contacts, store_env, wait_for
from tests.test_scheduler import SchedulerProcess

pytestmark = pytest.mark.postgres

ACCOUNTS = 50
IMPORTS_PER_ACCOUNT = 4
CONTACTS = 8  # per external account
BIG_SHOP = 600  # account 0's shared shop: more than one window's budget
LIMIT = 12  # the contact limit of every 10th account (from 5), below its sources' 23 emails
INTERVAL = 24.0
POLL = 0.5
JITTER = 0.5
QUEUEING = 3.0
CONCURRENCY = 8  # per scheduler: each server's AUTOIMPORT_MAX_SYNCS (8)
ALLOWANCE = POLL + JITTER + QUEUEING
SYNCS = 3  # scheduled syncs each import is watched for: 2 gaps each
TIMEOUT = 90.0  # seconds for every import to reach SYNCS syncs


# -- many external accounts behind one URL per service ---------------------------------------

Route = Callable[[str, Message, bytes], str | None]


class Tenants(LoopbackEmulator):
    """Emulators of one service behind one URL: each request goes to the emulator that issued
    its credentials (`route` reads them from the request); unknown ones get a 401."""

    def __init__(self, route: Route):
        self._route = route
        self._lock = threading.Lock()
        self._by_key: dict[str, LoopbackEmulator] = {}

    def add(self, tenant: LoopbackEmulator, *keys: str) -> None:
        with self._lock:
            self._by_key.update(dict.fromkeys(keys, tenant))

    def answer(self, method: str, target: str, headers: Message, body: bytes) -> Answer:
        key = self._route(method, headers, body) or ""
        with self._lock:
            tenant = self._by_key.get(key)
        if tenant is None:
            return 401, {}, {"error": "no emulated account has these credentials"}
        status, reply_headers, reply = tenant.answer(method, target, headers, body)
        if isinstance(reply, dict) and isinstance(reply.get("access_token"), str):
            self.add(tenant, reply["access_token"])  # a refreshed Google access token
        return status, reply_headers, reply


def shopify_key(method: str, headers: Message, body: bytes) -> str | None:
    return headers.get("X-Shopify-Access-Token")


def hubspot_key(method: str, headers: Message, body: bytes) -> str | None:
    return headers.get("Authorization")


def google_key(method: str, headers: Message, body: bytes) -> str | None:
    if method == "POST":  # the token endpoint: the refresh token
        return parse_qs(body.decode()).get("refresh_token", [""])[-1]
    return (headers.get("Authorization") or "").partition(" ")[2]


# -- the deployment -------------------------------------------------------------------------


@dataclass
class Imported:
    name: str
    account_id: str
    service: str
    external_account: str


@dataclass
class Fleet:
    """The emulated external accounts, the accounts and their imports."""

    shops: Tenants = field(default_factory=lambda: Tenants(shopify_key))
    portals: Tenants = field(default_factory=lambda: Tenants(hubspot_key))
    people: Tenants = field(default_factory=lambda: Tenants(google_key))
    imports: list[Imported] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)  # account -> contact limit
    shop_of: dict[str, ShopifyEmulator] = field(default_factory=dict)  # by import name
    opted_out: dict[str, set[str]] = field(default_factory=dict)  # account -> emails

    def server_env(self) -> dict[str, str]:
        google = GoogleContactsEmulator  # every tenant has the default OAuth client
        return {
            "AUTOIMPORT_SHOPIFY_URL": self.shops.url,
            "AUTOIMPORT_HUBSPOT_URL": self.portals.url,
            "AUTOIMPORT_GOOGLE_CONTACTS_URL": self.people.url,
            "AUTOIMPORT_GOOGLE_OAUTH_URL": self.people.url,
            "AUTOIMPORT_GOOGLE_CLIENT_ID": google.client_id,
            "AUTOIMPORT_GOOGLE_CLIENT_SECRET": google.client_secret,
        }

    def create(self, admin: Client) -> None:
        for a in range(ACCOUNTS):
            account_id = f"acct-{a:02d}-{uuid.uuid4().hex[:6]}"
            limit = LIMIT if a % 10 == 5 else 100_000
            self.limits[account_id] = limit
            admin.accounts.UpsertAccount(
                apb.UpsertAccountRequest(
                    account=apb.Account(account_id=account_id, plan="p", contact_limit=limit)
                )
            )
            opted_out = self.opted_out.setdefault(account_id, set())
            big = self._shop(f"big-shop-{a}", BIG_SHOP) if a == 0 else None
            for s in range(2):
                shop = big or self._shop(f"shop-{a}-{s}", CONTACTS)
                opted_out |= {
                    c["email"]
                    for c in shop.customers.values()
                    if c["email_marketing_consent"]["state"] == "unsubscribed"
                }
                created = self._import(admin, account_id, "shopify", shop.shop, shop.access_token)
                self.shop_of[created.name] = shop
            portal = HubSpotEmulator(
                portal_id=str(20_000_000 + a), access_token=f"pat-na1-scale-{a}-{uuid.uuid4().hex}"
            )
            portal.add_contacts(CONTACTS)
            self.portals.add(portal, f"Bearer {portal.access_token}")
            opted_out |= {
                c["properties"]["email"]
                for c in portal.contacts.values()
                if c["properties"]["hs_email_optout"] == "true" and c["properties"]["email"]
            }
            self._import(admin, account_id, "hubspot", portal.portal_id, portal.access_token)
            owner = GoogleContactsEmulator()
            owner.add_people(CONTACTS)
            self.people.add(owner, owner.access_token, owner.refresh_token)
            self._import(
                admin,
                account_id,
                "google_contacts",
                f"owner-{a}@example.com",
                owner.access_token,
                owner.refresh_token,
            )

    def _shop(self, name: str, customers: int) -> ShopifyEmulator:
        shop = ShopifyEmulator(shop=name, access_token=f"shpat_{name}_{uuid.uuid4().hex}")
        shop.add_customers(customers)
        self.shops.add(shop, shop.access_token)
        return shop

    def _import(
        self,
        admin: Client,
        account_id: str,
        service: str,
        external_account: str,
        access_token: str,
        refresh_token: str = "",
    ) -> pb.AutoImport:
        created = admin.imports.CreateImport(
            pb.CreateImportRequest(
                account_id=account_id,
                auto_import=pb.AutoImport(
                    service=service,
                    external_account=external_account,
                    credentials=pb.Credentials(
                        access_token=access_token, refresh_token=refresh_token
                    ),
                ),
            )
        )
        self.imports.append(Imported(created.name, account_id, service, external_account))
        return created

    def serving(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        for front in (self.shops, self.portals, self.people):
            stack.enter_context(front)
        return stack


# -- reading the syncs ------------------------------------------------------------------------


def syncs_of(admin: Client, name: str) -> list[pb.SyncReport]:
    """Every sync of the import, oldest first."""
    found: list[pb.SyncReport] = []
    token = ""
    while True:
        page = admin.imports.ListSyncs(
            pb.ListSyncsRequest(name=name, page_size=100, page_token=token)
        )
        found += page.syncs
        token = page.next_page_token
        if not token:
            return sorted(found, key=lambda s: s.start_time.ToNanoseconds())


def start_of(report: pb.SyncReport) -> float:
    return report.start_time.ToNanoseconds() / 1e9


def wait_until_each_synced(admin: Client, names: list[str], count: int, timeout: float) -> None:
    """Polls each import in turn (one ListSyncs at a time, to load the servers little) until
    every one has begun `count` syncs."""
    deadline = time.monotonic() + timeout
    pending = collections.deque(names)
    while pending:
        if len(syncs_of(admin, pending[0])) >= count:
            pending.popleft()
            continue
        assert time.monotonic() < deadline, f"{len(pending)} imports below {count} syncs"
        time.sleep(0.25)  # a poll's pace, not a synchronisation


def contacts_by_account(admin: Client, accounts: list[str]) -> dict[str, list[cpb.Contact]]:
    return {a: all_contacts(admin, a) for a in accounts}


@contextlib.contextmanager
def positions(settings: Settings) -> Iterator[Callable[[], tuple[int, int]]]:
    """Reads (events in the store, events the read model applied)."""
    app = open_application(settings)
    name = AccountViewsProjection.name
    views: AccountViews = open_view(AccountViewsProjection, VIEW_CLASSES, settings.store_env(name))
    try:
        yield lambda: (
            app.recorder.max_notification_id() or 0,
            views.max_tracking_id(app.name) or 0,
        )
    finally:
        views.datastore.close()
        app.close()


def budgets(settings: Settings, fleet: Fleet) -> dict[tuple[str, str, str], dict[int, int]]:
    """Contacts charged to each external account's budget, by window (its BudgetUsed events)."""
    app = open_application(settings)
    charged: dict[tuple[str, str, str], dict[int, int]] = {}
    try:
        for imported in fleet.imports:
            key = (imported.account_id, imported.service, imported.external_account)
            windows: dict[int, int] = collections.defaultdict(int)
            identity = SOURCES[imported.service].external_account_identity(key[2])
            budget = ExternalAccount.create_id(imported.account_id, imported.service, identity)
            for event in app.events.get(budget):
                if isinstance(event, ExternalAccount.BudgetUsed):
                    windows[event.window] += event.count
            charged[key] = dict(windows)
    finally:
        app.close()
    return charged


# -- the test ---------------------------------------------------------------------------------


def test_two_replicas_and_two_schedulers_keep_200_imports_synced_once_per_interval(
    tmp_path: Path,
):
    fleet = Fleet()
    with fleet.serving(), store_env("postgres", tmp_path) as store_vars:
        env = {**store_vars, **fleet.server_env(), "AUTOIMPORT_SYNC_INTERVAL": str(INTERVAL)}
        second = {**env, "AUTOIMPORT_DATA_DIR": str(tmp_path / "second")}
        with (
            ServerProcess(env) as one,
            ServerProcess(second) as two,
            one.client(one.admin_token) as admin,
        ):
            fleet.create(admin)
            names = [i.name for i in fleet.imports]
            accounts = list(fleet.limits)
            assert len(names) == ACCOUNTS * IMPORTS_PER_ACCOUNT == 200
            assert len({(i.service, i.external_account) for i in fleet.imports}) == 199
            schedulers = [
                SchedulerProcess(
                    server,
                    AUTOIMPORT_SCHEDULER_POLL=str(POLL),
                    AUTOIMPORT_SCHEDULER_JITTER=str(JITTER),
                    AUTOIMPORT_SCHEDULER_CONCURRENCY=str(CONCURRENCY),
                )
                for server in (one, two)
            ]
            started = time.monotonic()
            with schedulers[0], schedulers[1]:
                wait_until_each_synced(admin, names, 1, TIMEOUT)
                first_round = time.monotonic() - started
                # Between syncs: a person unsubscribes a contact whose source says subscribed,
                # and the source changes it; the next syncs update it and keep it unsubscribed.
                unsubscribed = contacts_by_account(admin, accounts)
                changed = {}
                for imported in fleet.imports[4::20]:  # a Shopify import of every 5th account
                    shop = fleet.shop_of[imported.name]
                    customer_id = min(shop.customers)
                    email = shop.customers[customer_id]["email"]
                    contacts_pb2_grpc.ContactServiceStub(admin.channel).UnsubscribeContact(
                        cpb.UnsubscribeContactRequest(account_id=imported.account_id, email=email)
                    )
                    shop.update(customer_id, first_name="Renamed")
                    changed[imported.account_id] = email
                wait_until_each_synced(admin, names, SYNCS, TIMEOUT)
                read_at = time.time()
                reports = {name: syncs_of(admin, name) for name in names}
            elapsed = time.monotonic() - started
            # The schedulers are stopped: the syncs they asked for end, then nothing runs.
            wait_for(
                lambda: [
                    n for n in names if syncs_of(admin, n)[-1].outcome == pb.SyncReport.RUNNING
                ],
                lambda running: not running,
            )
            final = {name: syncs_of(admin, name) for name in names}
            contacts = contacts_by_account(admin, accounts)
            settings = Settings.from_env(env)
            with positions(settings) as read:
                wait_for(read, lambda at: at[0] == at[1])  # the read model caught up
            charged = budgets(settings, fleet)
            replay = subprocess.run(
                [sys.executable, "-m", "service.cli", "replay", "--verify"],
                cwd=ROOT,
                env={**one.env},
                capture_output=True,
                text=True,
                timeout=120,
            )

    # Once per interval: consecutive scheduled syncs INTERVAL to INTERVAL + ALLOWANCE apart,
    # and none overdue when they were read.
    all_gaps = []
    for name, syncs in final.items():
        starts = [start_of(s) for s in syncs]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(INTERVAL <= gap <= INTERVAL + ALLOWANCE for gap in gaps), (name, gaps)
        assert read_at - max(start_of(s) for s in reports[name]) <= INTERVAL + ALLOWANCE, name
        all_gaps += gaps
    assert all(s.outcome != pb.SyncReport.FAILED for syncs in final.values() for s in syncs)
    late = [gap - INTERVAL for gap in all_gaps]
    counts = collections.Counter(len(syncs) for syncs in final.values())
    outcomes = collections.Counter(
        pb.SyncReport.Outcome.Name(s.outcome) for syncs in final.values() for s in syncs
    )
    print(
        f"\nscale-out: {len(names)} imports, {sum(counts.elements())} syncs in {elapsed:.0f} s "
        f"(first round {first_round:.1f} s); syncs per import {dict(sorted(counts.items()))}; "
        f"{len(all_gaps)} gaps, late by median {statistics.median(late):.2f} s, "
        f"p95 {statistics.quantiles(late, n=20)[-1]:.2f} s, max {max(late):.2f} s "
        f"(allowed {ALLOWANCE:g} s); outcomes {dict(outcomes)}"
    )

    # One contact per email per account, whatever the imports and replicas that brought it.
    for account_id, found in contacts.items():
        emails = [c.email for c in found]
        assert len(emails) == len(set(emails)), account_id
    # The 500-contact budget of each external account's window, shared by its imports.
    for key, windows in charged.items():
        assert all(used <= CONTACTS_PER_WINDOW for used in windows.values()), (key, windows)
    big = charged[(fleet.imports[0].account_id, "shopify", fleet.imports[0].external_account)]
    assert max(big.values()) == CONTACTS_PER_WINDOW  # the cap was reached, and held
    capped = [s for name in names[:2] for s in final[name] if s.outcome == pb.SyncReport.CAPPED]
    assert capped and all(s.deferred > 0 for s in capped)
    # The contact limit, reached and kept.
    for account_id, limit in fleet.limits.items():
        assert len(contacts[account_id]) <= limit, account_id
    limited = [a for a, limit in fleet.limits.items() if limit == LIMIT]
    assert all(len(contacts[a]) == LIMIT for a in limited)
    assert any(
        s.outcome == pb.SyncReport.LIMIT_REACHED and s.blocked_by_limit > 0
        for i in fleet.imports
        if i.account_id in limited
        for s in final[i.name]
    )
    # Consent: opted out at the source, unsubscribed; unsubscribed stays so, even when updated.
    for account_id, found in contacts.items():
        status = {c.email: c.status for c in found}
        before = {c.email for c in unsubscribed[account_id] if c.status == cpb.Contact.UNSUBSCRIBED}
        for email in before | (fleet.opted_out[account_id] & set(status)):
            assert status[email] == cpb.Contact.UNSUBSCRIBED, (account_id, email)
    for account_id, email in changed.items():
        contact = next(c for c in contacts[account_id] if c.email == email)
        assert contact.first_name == "Renamed" and contact.status == cpb.Contact.UNSUBSCRIBED
    # The read model caught up, and equal to a rebuild from every event.
    assert replay.returncode == 0, replay.stdout + replay.stderr

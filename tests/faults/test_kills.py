"""SIGKILL at seeded random moments of syncs and CSV imports, the server restarted after each,
then the work finished: every promise of tests/invariants.py still holds.

The world: account A (no effective limit) with two imports of scripted stores of 700 contacts
each (pages of 50, slowed a little so that a kill lands inside a sync) and CSV files of 1,500
rows overlapping them; account B (limit 400) with one import of 600 contacts and its own file.
Twenty of A's contacts are unsubscribed first: the stores still list them as subscribed.
Windows last AUTOIMPORT_SYNC_INTERVAL = 3 s, so the 500-contact budget turns over during the run.
Each kill point has fresh work: a sync of a store whose contacts all just changed, or a new file
of 1,500 rows (now and then one sent before, again); the kill comes 0 to 0.8 s after the call.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from autoimport.v1 import contacts_pb2 as cpb
from autoimport.v1 import contacts_pb2_grpc
from autoimport.v1 import imports_pb2 as pb
from service.config import Settings
from tests.conftest import STORES
from tests.faults import KILLS, SEED
from tests.invariants import Expected, broken_promises
from tests.scripted import T0
from tests.scripted_server import write_source
from tests.support import (
    Client,
    ServerProcess,
    all_contacts,
    new_account,
    store_env,
    wait_for_next_window,
)
from tests.test_api_csv import chunked, upload
from tests.test_api_sync import SCRIPTED, contacts_of

INTERVAL = 3.0
PAGE_DELAY = 0.05  # seconds a page: a 700-contact read takes 0.7 s, long enough to be killed in
CSV_CHUNK = 16 * 1024


@dataclass
class Upload:
    account_id: str
    request_id: str
    data: bytes
    emails: set[str]


@dataclass
class World:
    sources: Path
    imports: dict[str, tuple[str, list[dict[str, Any]]]] = field(default_factory=dict)
    stores: dict[str, str] = field(default_factory=dict)  # each import's external account
    uploads: list[Upload] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)
    unsubscribed: dict[str, set[str]] = field(default_factory=dict)  # by account

    def account(self, admin: Client, limit: int) -> str:
        account_id = new_account(admin, limit)
        self.limits[account_id] = limit
        return account_id

    def new_import(self, admin: Client, account_id: str, prefix: str, count: int) -> None:
        store = f"store-{uuid.uuid4().hex[:8]}"
        contacts = contacts_of(count, prefix=prefix)
        write_source(self.sources, store, contacts, page_size=50, page_delay=PAGE_DELAY)
        created = admin.imports.CreateImport(
            pb.CreateImportRequest(
                account_id=account_id,
                auto_import=pb.AutoImport(
                    service="shopify",
                    external_account=store,
                    credentials=pb.Credentials(access_token="t"),
                ),
            )
        )
        self.imports[created.name] = (account_id, contacts)
        self.stores[created.name] = store

    def change_source(self, name: str, round_: int) -> None:
        """Every contact of the import's store changes (a new first name, a later time): its
        next sync has them all to read again."""
        _, contacts = self.imports[name]
        later = T0 + timedelta(days=round_ + 1)
        changed = [
            {
                **c,
                "first_name": f"Round{round_}",
                "updated_at": (later + timedelta(seconds=n)).isoformat(),
            }
            for n, c in enumerate(contacts)
        ]
        write_source(self.sources, self.stores[name], changed, page_size=50, page_delay=PAGE_DELAY)

    def new_upload(self, account_id: str, prefixes: list[str], rows: int) -> None:
        emails = [f"{prefixes[n % len(prefixes)]}{n:05d}@example.com" for n in range(rows)]
        data = ("email,first_name\n" + "".join(f"{e},Csv\n" for e in emails)).encode()
        self.uploads.append(Upload(account_id, str(uuid.uuid4()), data, set(emails)))

    def expected(self) -> list[Expected]:
        """Unlimited accounts hold every contact sent; a limited one is only checked for its
        limit, its count and duplicates (which contacts fit depends on the kills' timing)."""
        present: dict[str, set[str]] = {a: set() for a in self.limits}
        for account_id, contacts in self.imports.values():
            present[account_id] |= {c["email"] for c in contacts}
        for sent in self.uploads:
            present[sent.account_id] |= sent.emails
        return [
            Expected(
                account_id,
                present=present[account_id] if limit > 10_000 else set(),
                unsubscribed=self.unsubscribed.get(account_id, set()),
            )
            for account_id, limit in self.limits.items()
        ]


def set_up(admin: Client, world: World) -> None:
    unlimited, limited = world.account(admin, 100_000), world.account(admin, 400)
    world.new_import(admin, unlimited, "a", 700)
    world.new_import(admin, unlimited, "b", 700)
    world.new_import(admin, limited, "l", 600)
    world.new_upload(unlimited, ["a", "c"], 1500)
    world.new_upload(unlimited, ["b", "d"], 1500)
    world.new_upload(limited, ["l", "m"], 600)
    # Twenty of A's store contacts are unsubscribed before any sync reaches them.
    first = [f"a{n:05d}@example.com" for n in range(20)]
    upload(admin, unlimited, [("email\n" + "".join(f"{e}\n" for e in first)).encode()])
    contacts = contacts_pb2_grpc.ContactServiceStub(admin.channel)
    for email in first:
        contacts.UnsubscribeContact(
            cpb.UnsubscribeContactRequest(account_id=unlimited, email=email)
        )
    world.unsubscribed = {unlimited: set(first)}


def some_work(rng: random.Random, admin: Client, world: World, round_: int) -> tuple[str, Any]:
    """A sync of one import whose store just changed, or the upload of a new file (or, now and
    then, one sent before again: a retry), chosen by the seed: work enough to be killed in."""
    if rng.random() < 0.5:
        name = rng.choice(sorted(world.imports))
        world.change_source(name, round_)
        return f"sync {name}", lambda: admin.imports.TriggerSync(
            pb.TriggerSyncRequest(name=name), timeout=60
        )
    if rng.random() < 0.75:
        world.new_upload(rng.choice(sorted(world.limits)), [f"r{round_}-", "a", "l"], 1500)
        sent = world.uploads[-1]
    else:
        sent = rng.choice(world.uploads)
    return f"upload {sent.request_id}", lambda: upload(
        admin, sent.account_id, chunked(sent.data, CSV_CHUNK), request_id=sent.request_id
    )


def finish(admin: Client, world: World) -> None:
    """Every upload retried (its request id: applied once, carried on where it stopped), every
    import synced window after window until its store is read to the end."""
    for sent in world.uploads:
        upload(admin, sent.account_id, chunked(sent.data, CSV_CHUNK), request_id=sent.request_id)
    for name, (account_id, contacts) in world.imports.items():
        wanted = {c["email"] for c in contacts}
        for _ in range(10):
            report = admin.imports.TriggerSync(pb.TriggerSyncRequest(name=name), timeout=60)
            held = {c.email for c in all_contacts(admin, account_id)}
            full = len(held) >= world.limits[account_id]
            read_to_the_end = report.outcome == pb.SyncReport.COMPLETED and not report.deferred
            if read_to_the_end and (wanted <= held or full):
                break
            wait_for_next_window(INTERVAL)


@pytest.mark.parametrize("store", STORES)
def test_kills_during_syncs_and_uploads_lose_and_double_nothing(store: str, tmp_path: Path):
    rng = random.Random(f"{SEED}/{store}")
    sources = tmp_path / "sources"
    sources.mkdir()
    world = World(sources)
    done: list[str] = []
    with store_env(store, tmp_path) as env:
        env = {
            **env,
            "AUTOIMPORT_TEST_SOURCES": str(sources),
            "AUTOIMPORT_SYNC_INTERVAL": str(INTERVAL),
        }
        with ServerProcess(env, SCRIPTED) as server, server.client(server.admin_token) as admin:
            set_up(admin, world)
        for kill in range(KILLS):
            server = ServerProcess(env, SCRIPTED).start()
            with server.client(server.admin_token) as admin:
                what, work = some_work(rng, admin, world, kill)
                outcome: list[str] = []

                def run(work: Any = work, outcome: list[str] = outcome) -> None:
                    try:
                        work()
                        outcome.append("finished")
                    except grpc.RpcError as e:
                        outcome.append(e.code().name)

                thread = threading.Thread(target=run)
                thread.start()
                time.sleep(rng.uniform(0.0, 0.8))
                server.kill()  # SIGKILL: no shutdown of any kind
                thread.join(timeout=60)
            done.append(f"kill {kill}: {what}: {outcome}")
            assert outcome and outcome[0] in ("finished", "UNAVAILABLE", "CANCELLED"), done
        with ServerProcess(env, SCRIPTED) as server, server.client(server.admin_token) as admin:
            finish(admin, world)
            broken = broken_promises(Settings.from_env(server.env), admin, world.expected())

    interrupted = [line for line in done if "finished" not in line]
    print("\n".join(done))
    print(f"{len(interrupted)} of {len(done)} kills landed inside work")
    assert broken == [], f"seed {SEED}, after:\n" + "\n".join(done)
    assert interrupted, "no kill landed inside any work: the test proves nothing"

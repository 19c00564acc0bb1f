"""Sync throughput: 500 contacts from a scripted source through TriggerSync, in a real server.

Method: the real server (tests/scripted_server.py: `autoimport serve` whose connectors read
scripted sources from JSON files, 100 contacts a page, no delay) on SQLite and on PostgreSQL.
Each run creates an import of a fresh external account holding 500 new contacts with three
custom-field values each, and times TriggerSync over gRPC until its report comes back (the sync
is complete and saved), then how long the read model takes to show the 500 contacts.
Baseline, measured side by side on the same kind of store: saving the same 500 contacts as
Contact aggregates in one eventsourcing transaction, in-process. It is the floor of what a sync
must write; the ratio says what validation, decisions, the audit events, paging and gRPC add.
Reports the median of --runs runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from autoimport.v1 import accounts_pb2, contacts_pb2, contacts_pb2_grpc, imports_pb2
from domain.contact import Contact, ContactValues
from service.config import Settings
from service.stores import open_application
from tests.scripted import T0
from tests.scripted_server import write_source
from tests.support import PG_URL, ServerProcess, postgres_error, store_env

CONTACTS = 500


def source_contacts(tag: str) -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"{tag}-{n}",
            "email": f"{tag}-{n}@example.com",
            "updated_at": (T0 + timedelta(seconds=n)).isoformat(),
            "first_name": f"First{n}",
            "last_name": f"Last{n}",
            "fields": {"total_spent": f"{n}.00", "orders_count": str(n % 7), "country": "FR"},
        }
        for n in range(CONTACTS)
    ]


def time_syncs(env: dict[str, str], sources: Path, runs: int) -> tuple[list[float], list[float]]:
    syncs, lags = [], []
    with (
        ServerProcess(
            {**env, "AUTOIMPORT_TEST_SOURCES": str(sources)}, "tests.scripted_server"
        ) as server,
        server.client(server.admin_token) as client,
    ):
        client.accounts.UpsertAccount(
            accounts_pb2.UpsertAccountRequest(
                account=accounts_pb2.Account(account_id="bench", plan="p", contact_limit=10**7)
            )
        )
        contacts = contacts_pb2_grpc.ContactServiceStub(client.channel)
        for run in range(runs + 1):  # the first run warms up
            store = f"store-{uuid.uuid4().hex[:8]}"
            write_source(sources, store, source_contacts(store))
            created = client.imports.CreateImport(
                imports_pb2.CreateImportRequest(
                    account_id="bench",
                    auto_import=imports_pb2.AutoImport(
                        service="shopify",
                        external_account=store,
                        credentials=imports_pb2.Credentials(access_token="x"),
                    ),
                )
            )
            start = time.perf_counter()
            report = client.imports.TriggerSync(
                imports_pb2.TriggerSyncRequest(name=created.name), timeout=300
            )
            synced = time.perf_counter()
            assert report.added == CONTACTS, report
            expected = CONTACTS * (run + 1)
            while (
                contacts.ListContacts(
                    contacts_pb2.ListContactsRequest(account_id="bench")
                ).total_size
                < expected
            ):
                time.sleep(0.005)
            visible = time.perf_counter()
            if run:
                syncs.append(synced - start)
                lags.append(visible - synced)
    return syncs, lags


def time_baseline(env: dict[str, str], runs: int) -> list[float]:
    app = open_application(Settings.from_env(env))
    app.upsert_account("bench", "p", 10**7, actor="bench")
    times = []
    try:
        for run in range(runs + 1):
            tag = uuid.uuid4().hex[:8]
            values = [
                (
                    f"{tag}-{n}@example.com",
                    ContactValues(f"First{n}", f"Last{n}", fields={"%A%": str(n)}),
                )
                for n in range(CONTACTS)
            ]
            start = time.perf_counter()
            batch = [
                Contact.add("bench", e, v, list_ids=[], tags=[], source="x") for e, v in values
            ]
            app.save(*batch)
            if run:
                times.append(time.perf_counter() - start)
    finally:
        app.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    print(f"{CONTACTS} contacts per sync, median of {args.runs} runs (after one warm-up)")
    widths = (9, 14, 11, 11, 6, 11)
    header = ("store", "TriggerSync s", "contacts/s", "baseline s", "ratio", "view lag s")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for store in args.stores.split(","):
        if store == "postgres" and (error := postgres_error()):
            print(f"{store:9} skipped: PostgreSQL is not reachable at {PG_URL} ({error})")
            continue
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
            folder = Path(tmp)
            (folder / "sources").mkdir()
            with store_env(store, folder / "server") as env:
                syncs, lags = time_syncs(env, folder / "sources", args.runs)
            with store_env(store, folder / "baseline") as env:
                baseline = time_baseline(env, args.runs)
        sync, base, lag = (
            statistics.median(syncs),
            statistics.median(baseline),
            statistics.median(lags),
        )
        cells = (
            store,
            f"{sync:.3f}",
            f"{CONTACTS / sync:.0f}",
            f"{base:.3f}",
            f"{sync / base:.1f}",
            f"{lag:.3f}",
        )
        print(" ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))


if __name__ == "__main__":
    main()

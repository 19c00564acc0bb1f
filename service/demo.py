"""`make run`'s demo: a Shopify shop on loopback and an import of it, to watch the service work.

The shop is the Shopify emulator (emulators/shopify.py, the same one the connector's tests use)
with a few thousand generated customers, some without a valid email and some opted out of
email, and a few of them changed every interval, as people edit their customers. Account `demo`
has a contact limit below the shop's count, and one auto import reads the shop: the scheduler's
first syncs add 500 a window (CAPPED), then the limit stops new contacts (LIMIT_REACHED), and
later syncs bring only what changed.

Everything here goes through the gRPC API with the admin token, as any client would, and is
idempotent: a second `make run` on the same data directory finds the account and the import
again (and carries on from the import's last sync).
"""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from google.protobuf import field_mask_pb2

from autoimport.v1 import accounts_pb2, accounts_pb2_grpc, imports_pb2, imports_pb2_grpc
from emulators.shopify import ShopifyEmulator

ACCOUNT = "demo"
SHOP = "demo-shop"
# The emulator's Admin API token: the import's credentials (not a secret: the shop is fake).
ACCESS_TOKEN = "shpat_demo_0123456789abcdef"
CUSTOMERS = 3000
WITHOUT_EMAIL_EVERY = 97  # every 97th customer has no email,
INVALID_EMAIL_EVERY = 40  # every 40th one an invalid one
CONTACT_LIMIT = 1200  # below CUSTOMERS: the third sync reaches it
INTERVAL = "10"  # seconds: AUTOIMPORT_SYNC_INTERVAL for the demo, unless it is set
CHANGED_PER_INTERVAL = 5  # customers changed at the shop every interval
# Fixed, so that every run generates the same shop and a second run's import finds the data
# it already read (its cursor stays valid).
GENERATED_AT = datetime(2026, 1, 1, tzinfo=UTC)
# CreateImport's request_id: the same import however many times the demo starts.
REQUEST_ID = "6f1d3c2a-8e4b-4f5a-9c7d-2b1e0a9f8d01"
TIMEOUT = 10.0


@dataclass
class Shop:
    """The demo's shop, served on loopback until `stop`."""

    emulator: ShopifyEmulator
    opted_out: int
    without_valid_email: int
    _stopping: threading.Event

    @property
    def url(self) -> str:
        return self.emulator.url

    def stop(self) -> None:
        self._stopping.set()
        self.emulator.stop()


def start_shop(interval: float) -> Shop:
    """The emulator with its customers, on a free loopback port; `interval` seconds apart, a
    few customers change (a new last name: a later sync updates them)."""
    emulator = ShopifyEmulator(shop=SHOP, access_token=ACCESS_TOKEN)
    emulator.add_customers(
        CUSTOMERS,
        updated_at=GENERATED_AT,
        without_email_every=WITHOUT_EMAIL_EVERY,
        invalid_email_every=INVALID_EMAIL_EVERY,
    )
    customers = emulator.customers.values()
    opted_out = sum(c["email_marketing_consent"]["state"] == "unsubscribed" for c in customers)
    invalid = sum(not c["email"] or "@" not in c["email"] for c in customers)
    emulator.start()
    stopping = threading.Event()
    threading.Thread(
        target=_change_customers,
        args=(emulator, interval, stopping),
        name="demo-shop-changes",
        daemon=True,
    ).start()
    return Shop(emulator, opted_out, invalid, stopping)


def _change_customers(
    emulator: ShopifyEmulator, interval: float, stopping: threading.Event
) -> None:
    rng = random.Random(0)
    ids = sorted(emulator.customers)[:400]  # among those the first sync reads
    rounds = 0
    while not stopping.wait(interval):
        rounds += 1
        for customer_id in rng.sample(ids, CHANGED_PER_INTERVAL):
            emulator.update(customer_id, last_name=f"Changed{rounds}")


@dataclass(frozen=True)
class DemoImport:
    name: str
    created: bool  # False: found from an earlier run
    resumed: bool  # it was paused (by a run with AUTOIMPORT_DEMO=0) or disconnected


def set_up(channel: grpc.Channel, token: str) -> DemoImport:
    """Account `demo` with its contact limit, and its import of the demo shop, active."""
    metadata = (("authorization", f"Bearer {token}"),)
    accounts = accounts_pb2_grpc.AccountServiceStub(channel)
    imports = imports_pb2_grpc.AutoImportServiceStub(channel)
    accounts.UpsertAccount(
        accounts_pb2.UpsertAccountRequest(
            account=accounts_pb2.Account(
                account_id=ACCOUNT, plan="demo", contact_limit=CONTACT_LIMIT
            )
        ),
        metadata=metadata,
        timeout=TIMEOUT,
    )
    found = find(channel, token)
    created = found is None
    if found is None:
        found = _create(imports, metadata, REQUEST_ID)
        if found.state == imports_pb2.AutoImport.DELETED:  # someone deleted the first one
            found = _create(imports, metadata, str(uuid.uuid4()))
    State = imports_pb2.AutoImport
    resumed = found.state in (State.PAUSED, State.NEEDS_REAUTH)
    if found.state == State.PAUSED:
        imports.ResumeImport(
            imports_pb2.ResumeImportRequest(name=found.name), metadata=metadata, timeout=TIMEOUT
        )
    elif found.state == State.NEEDS_REAUTH:  # new credentials reconnect it
        imports.UpdateImport(
            imports_pb2.UpdateImportRequest(
                auto_import=State(
                    name=found.name,
                    credentials=imports_pb2.Credentials(access_token=ACCESS_TOKEN),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["credentials"]),
            ),
            metadata=metadata,
            timeout=TIMEOUT,
        )
    return DemoImport(found.name, created, resumed)


def _create(
    imports: imports_pb2_grpc.AutoImportServiceStub,
    metadata: tuple[tuple[str, str], ...],
    request_id: str,
) -> imports_pb2.AutoImport:
    return imports.CreateImport(
        imports_pb2.CreateImportRequest(
            account_id=ACCOUNT,
            request_id=request_id,
            auto_import=imports_pb2.AutoImport(
                service="shopify",
                external_account=SHOP,
                display_name="Demo shop (emulator)",
                credentials=imports_pb2.Credentials(access_token=ACCESS_TOKEN),
                list_ids=["demo-customers"],
                tags=["shopify-demo"],
            ),
        ),
        metadata=metadata,
        timeout=TIMEOUT,
    )


def find(channel: grpc.Channel, token: str) -> imports_pb2.AutoImport | None:
    """The demo's import of the shop, if account `demo` has one (not deleted)."""
    metadata = (("authorization", f"Bearer {token}"),)
    imports = imports_pb2_grpc.AutoImportServiceStub(channel)
    request = imports_pb2.ListImportsRequest(account_id=ACCOUNT, service="shopify")
    try:
        while True:
            page = imports.ListImports(request, metadata=metadata, timeout=TIMEOUT)
            for auto_import in page.auto_imports:
                if (
                    auto_import.external_account == SHOP
                    and auto_import.state != imports_pb2.AutoImport.DELETED
                ):
                    return auto_import
            if not page.next_page_token:
                return None
            request.page_token = page.next_page_token
    except grpc.RpcError as e:
        if isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.NOT_FOUND:
            return None  # no account `demo`
        raise


def pause(channel: grpc.Channel, token: str) -> str | None:
    """Pauses the demo's import when it is active (its shop is the emulator, which is not there
    without the demo); returns its name when it did."""
    found = find(channel, token)
    if found is None or found.state != imports_pb2.AutoImport.ACTIVE:
        return None
    imports_pb2_grpc.AutoImportServiceStub(channel).PauseImport(
        imports_pb2.PauseImportRequest(name=found.name),
        metadata=(("authorization", f"Bearer {token}"),),
        timeout=TIMEOUT,
    )
    return found.name

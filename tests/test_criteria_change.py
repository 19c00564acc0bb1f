"""A change of an import's criteria restarts its read from the beginning (design.md section 4,
invariant 1; issue 8, defect 2), end to end: a real server process reading each connector's
emulator on loopback, on SQLite and PostgreSQL.

The connectors' cursors pass records that did not match the old criteria (Shopify and Google
filter after reading; HubSpot's keyset moves on the last matching `lastmodifieddate`): resuming
from them after the criteria widen would never import the unchanged records that match now.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import field_mask_pb2

from autoimport.v1 import accounts_pb2
from autoimport.v1 import imports_pb2 as pb
from emulators.google_contacts import MY_CONTACTS, OTHER_GROUP, GoogleContactsEmulator
from emulators.hubspot import HubSpotEmulator
from emulators.shopify import ShopifyEmulator, shop_time
from tests.conftest import STORES
from tests.support import Client, ServerProcess, account_of, all_contacts, store_env

INTERVAL = 60.0  # one sync window holds every sync of a test: 10 contacts, a 500 budget
RESTART_REASON = "criteria"


def tagged(customer: dict[str, Any], tag: str) -> bool:
    return tag in [t.strip().lower() for t in (customer["tags"] or "").split(",")]


def subscribed(customer: dict[str, Any]) -> bool:
    return customer["email_marketing_consent"]["state"] == "subscribed"


def groups_of(person: dict[str, Any]) -> set[str]:
    return {m["contactGroupMembership"]["contactGroupResourceName"] for m in person["memberships"]}


def create_import(
    admin: Client, service: str, external_account: str, credentials: pb.Credentials, **criteria: Any
) -> str:
    """An import of `service` with `criteria` (one oneof member), in a fresh account."""
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    admin.accounts.UpsertAccount(
        accounts_pb2.UpsertAccountRequest(
            account=accounts_pb2.Account(account_id=account_id, plan="p", contact_limit=1000)
        )
    )
    return admin.imports.CreateImport(
        pb.CreateImportRequest(
            account_id=account_id,
            auto_import=pb.AutoImport(
                service=service,
                external_account=external_account,
                credentials=credentials,
                **criteria,
            ),
        )
    ).name


def sync(admin: Client, name: str) -> pb.SyncReport:
    return admin.imports.TriggerSync(pb.TriggerSyncRequest(name=name), timeout=60)


def change_criteria(admin: Client, name: str, **criteria: Any) -> None:
    admin.imports.UpdateImport(
        pb.UpdateImportRequest(
            auto_import=pb.AutoImport(name=name, **criteria),
            update_mask=field_mask_pb2.FieldMask(paths=["criteria"]),
        )
    )


def emails_in(admin: Client, name: str) -> list[str]:
    return sorted(c.email for c in all_contacts(admin, account_of(name)))


def history(admin: Client, name: str) -> list[pb.ImportEvent]:
    return list(admin.imports.GetImportHistory(pb.GetImportHistoryRequest(name=name)))


def assert_read_restarted_once_after_the_criteria_changed(admin: Client, name: str) -> None:
    events = history(admin, name)
    types = [e.type for e in events]
    assert types.count("ReadRestarted") == 1, types
    at = types.index("ReadRestarted")
    # The first sync ended, the criteria changed, the read restarted, then the second sync.
    assert types[at - 2 : at + 2] == ["SyncCompleted", "Updated", "ReadRestarted", "SyncStarted"]
    assert "criteria" in events[at - 1].details["changes"]
    assert RESTART_REASON in events[at].details["reason"], events[at]


def check_widening(
    admin: Client,
    name: str,
    narrow: set[str],
    wide: set[str],
    widen: dict[str, Any],
    *,
    fetched_again: int,
    skipped_missing_email: int = 0,
) -> None:
    """First sync: only `narrow` arrives. After `widen`, the second sync reads everything
    again (`fetched_again` records): `wide` is in the account, each email once; the contacts
    already imported are unchanged."""
    first = sync(admin, name)
    assert first.outcome == pb.SyncReport.COMPLETED, first
    assert (first.fetched, first.added) == (len(narrow), len(narrow)), first
    assert emails_in(admin, name) == sorted(narrow)

    change_criteria(admin, name, **widen)
    second = sync(admin, name)

    assert second.outcome == pb.SyncReport.COMPLETED, second
    assert (second.added, second.updated, second.unchanged) == (
        len(wide - narrow),
        0,
        len(narrow),
    ), second
    assert second.fetched == fetched_again, second
    assert second.skipped_missing_email == skipped_missing_email, second
    assert emails_in(admin, name) == sorted(wide)  # each once: nothing added twice
    assert_read_restarted_once_after_the_criteria_changed(admin, name)


@pytest.fixture(params=STORES)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A server's environment on SQLite, then on PostgreSQL."""
    with store_env(request.param, tmp_path) as store:
        yield {**store, "AUTOIMPORT_SYNC_INTERVAL": str(INTERVAL)}


# -- Shopify: a customer tag ------------------------------------------------------------------


@pytest.fixture
def shopify(env: dict[str, str]) -> Iterator[tuple[ShopifyEmulator, Client]]:
    with (
        ShopifyEmulator() as emulator,
        ServerProcess({**env, "AUTOIMPORT_SHOPIFY_URL": emulator.url}) as server,
        server.client(server.admin_token) as admin,
    ):
        yield emulator, admin


def test_dropping_the_shopify_customer_tag_imports_every_customer_the_first_read_passed(
    shopify: tuple[ShopifyEmulator, Client],
):
    """Unchanged customers without the tag were read past by the first sync: they arrive."""
    emulator, admin = shopify
    emulator.add_customers(10)
    customers = list(emulator.customers.values())
    vip = {c["email"] for c in customers if tagged(c, "vip")}
    assert len(vip) == 4
    name = create_import(
        admin,
        "shopify",
        emulator.shop,
        pb.Credentials(access_token=emulator.access_token),
        shopify=pb.ShopifyCriteria(customer_tag="vip"),
    )

    check_widening(
        admin,
        name,
        vip,
        {c["email"] for c in customers},
        {"shopify": pb.ShopifyCriteria()},
        fetched_again=10,
    )


def test_narrowing_the_shopify_criteria_keeps_what_was_imported_and_adds_no_outsider(
    shopify: tuple[ShopifyEmulator, Client],
):
    """Narrowing re-reads with the new criteria: the contacts already imported stay (an import
    never deletes); a customer that matches only the old criteria is neither added nor updated."""
    emulator, admin = shopify
    ids = emulator.add_customers(10)
    vip = {i for i in ids if tagged(emulator.customers[i], "vip")}
    vip_subscribed = {i for i in vip if subscribed(emulator.customers[i])}
    assert (len(vip), len(vip_subscribed)) == (4, 2)
    name = create_import(
        admin,
        "shopify",
        emulator.shop,
        pb.Credentials(access_token=emulator.access_token),
        shopify=pb.ShopifyCriteria(customer_tag="vip"),
    )
    first = sync(admin, name)
    assert (first.outcome, first.added) == (pb.SyncReport.COMPLETED, 4), first
    imported = emails_in(admin, name)

    # At Shopify, within the next read's window: a new VIP who is not subscribed, and a VIP
    # already imported who is not subscribed renamed. Both match only the old criteria.
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    (newcomer,) = emulator.add_customers(1, updated_at=an_hour_ago)
    renamed = min(vip - vip_subscribed)
    with emulator.lock:
        emulator.customers[renamed].update(first_name="Renamed", updated_at=shop_time(an_hour_ago))
    assert tagged(emulator.customers[newcomer], "vip")
    assert not subscribed(emulator.customers[newcomer])
    change_criteria(
        admin, name, shopify=pb.ShopifyCriteria(customer_tag="vip", subscribed_only=True)
    )
    second = sync(admin, name)

    assert second.outcome == pb.SyncReport.COMPLETED, second
    assert (second.fetched, second.added, second.updated, second.unchanged) == (2, 0, 0, 2), second
    contacts = all_contacts(admin, account_of(name))
    assert sorted(c.email for c in contacts) == imported  # all four kept, the newcomer absent
    assert "Renamed" not in [c.first_name for c in contacts]
    assert_read_restarted_once_after_the_criteria_changed(admin, name)


# -- Google Contacts: a contact group ---------------------------------------------------------


@pytest.fixture
def google(env: dict[str, str]) -> Iterator[tuple[GoogleContactsEmulator, Client]]:
    with GoogleContactsEmulator() as emulator:
        env = {
            **env,
            "AUTOIMPORT_GOOGLE_CONTACTS_URL": emulator.url,
            "AUTOIMPORT_GOOGLE_OAUTH_URL": emulator.url,
            "AUTOIMPORT_GOOGLE_CLIENT_ID": emulator.client_id,
            "AUTOIMPORT_GOOGLE_CLIENT_SECRET": emulator.client_secret,
        }
        with ServerProcess(env) as server, server.client(server.admin_token) as admin:
            yield emulator, admin


def test_widening_the_google_contact_group_imports_every_member_the_sync_token_passed(
    google: tuple[GoogleContactsEmulator, Client],
):
    """After a full sync of one group the cursor is a sync token (only changes come after it):
    the members of the wider group that never changed arrive all the same."""
    emulator, admin = google
    names = emulator.add_people(
        10, without_email_every=0, invalid_email_every=0, other_group_every=3
    )
    emulator.update(names[0], groups=[])  # in no group: matches neither criteria
    people = emulator.people

    def members(group: str) -> set[str]:
        return {emulator.primary_email(n) for n, p in people.items() if group in groups_of(p)}

    narrow, wide = members(OTHER_GROUP), members(MY_CONTACTS)
    assert (len(narrow), len(wide)) == (3, 9) and narrow < wide
    name = create_import(
        admin,
        "google_contacts",
        "owner@example.com",
        pb.Credentials(access_token=emulator.access_token, refresh_token=emulator.refresh_token),
        google_contacts=pb.GoogleContactsCriteria(contact_group=OTHER_GROUP),
    )

    check_widening(
        admin,
        name,
        narrow,
        wide,
        {"google_contacts": pb.GoogleContactsCriteria(contact_group=MY_CONTACTS)},
        fetched_again=9,
    )


# -- HubSpot: a lifecycle stage ---------------------------------------------------------------


@pytest.fixture
def hubspot(env: dict[str, str]) -> Iterator[tuple[HubSpotEmulator, Client]]:
    with (
        HubSpotEmulator() as emulator,
        ServerProcess({**env, "AUTOIMPORT_HUBSPOT_URL": emulator.url}) as server,
        server.client(server.admin_token) as admin,
    ):
        yield emulator, admin


def test_dropping_the_hubspot_lifecycle_stage_imports_contacts_modified_before_the_keyset(
    hubspot: tuple[HubSpotEmulator, Client],
):
    """The stage is a search filter, so the keyset stops at the last matching contact's
    lastmodifieddate: contacts of other stages modified hours before it (far past the
    connector's ten-minute lookback) arrive once the stage is dropped."""
    emulator, admin = hubspot
    emulator.add_contacts(10, ties=1, step=timedelta(hours=1))
    contacts = list(emulator.contacts.values())
    properties = [c["properties"] for c in contacts]
    customers = {p["email"] for p in properties if p["lifecyclestage"] == "customer"}
    with_email = {p["email"] for p in properties if p["email"]}
    assert (len(customers), len(with_email)) == (2, 9) and None not in customers
    name = create_import(
        admin,
        "hubspot",
        emulator.portal_id,
        pb.Credentials(access_token=emulator.access_token),
        hubspot=pb.HubSpotCriteria(lifecycle_stage="customer"),
    )

    check_widening(
        admin,
        name,
        customers,
        with_email,
        {"hubspot": pb.HubSpotCriteria()},
        fetched_again=10,
        skipped_missing_email=1,
    )

"""The Shopify connector against the Shopify emulator (real HTTP on loopback), and syncs of a
Shopify import through a real server process reading the emulator."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from autoimport.v1 import imports_pb2 as pb
from connectors import shopify
from connectors.base import (
    DEADLINE_PASSED,
    Finding,
    PermanentError,
    RetryableError,
)
from connectors.shopify import ShopifyConnector, ShopifyCriteria
from emulators.shopify import ShopifyEmulator
from tests.connectors.contract import (
    findings_of,
    later,
    quick_backoff,  # noqa: F401  (an autouse fixture)
    read_chain,
)
from tests.support import (
    ServerProcess,
    new_import,
    store_env,
)

ALL = ShopifyCriteria()


@pytest.fixture
def emulator() -> Iterator[ShopifyEmulator]:
    with ShopifyEmulator() as emulator:
        yield emulator


def connector_of(emulator: ShopifyEmulator, token: str | None = None) -> ShopifyConnector:
    return ShopifyConnector(emulator.shop, token or emulator.access_token, base_url=emulator.url)


# Each connector's reads to `later` (a bound after the test's changes), of every customer.
read_chain = functools.partial(read_chain, criteria=ALL)


def test_pages_through_customers_that_share_timestamps_each_exactly_once(
    emulator: ShopifyEmulator,
):
    ids = emulator.add_customers(1000, ties=100)
    contacts, _, pages = read_chain(connector_of(emulator))

    assert [c.external_id for c in contacts] == [str(i) for i in ids]
    assert len(pages) == 4
    assert [json.loads(c.position or "")["since_id"] for c in contacts] == ids
    first, *rest = emulator.requests
    assert {"updated_at_max", "limit", "fields"} <= set(first.query)
    assert first.query["limit"] == "250"
    assert "page_info" not in first.query
    assert len(rest) == 3 and all(set(r.query) == {"page_info", "limit", "fields"} for r in rest)
    assert all(r.status == 200 for r in emulator.requests)
    assert emulator.early_retries == []


def test_the_emulator_refuses_filters_sent_again_with_page_info(emulator: ShopifyEmulator):
    emulator.add_customers(300)
    headers = {"X-Shopify-Access-Token": emulator.access_token}
    first = httpx.get(
        f"{emulator.url}/admin/api/2025-01/customers.json", params={"limit": 250}, headers=headers
    )
    page_info = httpx.URL(first.headers["Link"].split(">")[0][1:]).params["page_info"]
    response = httpx.get(
        f"{emulator.url}/admin/api/2025-01/customers.json",
        params={"limit": 250, "page_info": page_info, "updated_at_min": "2025-01-01T00:00:00Z"},
        headers=headers,
    )
    assert response.status_code == 400
    assert "updated_at_min cannot be passed when page_info is present" in response.text


def test_a_chain_keeps_its_window_and_the_next_chain_starts_at_its_end(
    emulator: ShopifyEmulator,
):
    ids = emulator.add_customers(600, ties=600)  # all share one updated_at
    connector = connector_of(emulator)
    page = connector.fetch_page(ALL, "", datetime.now(UTC))  # the window ends now
    assert len(page.contacts) == 250 and page.has_more
    time.sleep(1.1)  # so that an update gets a later second than the chain's window
    emulator.update(ids[10], first_name="Moved")  # already read: comes with the next chain
    emulator.update(ids[400], first_name="Moved too")  # not read yet: leaves this chain
    rest, cursor, _ = read_chain(connector, page.cursor)
    first_chain = [c.external_id for c in page.contacts + rest]
    assert str(ids[400]) not in first_chain and len(first_chain) == 599
    assert json.loads(cursor).keys() == {"min"}

    next_chain, cursor_after, _ = read_chain(connector, cursor)

    assert sorted(c.first_name for c in next_chain) == ["Moved", "Moved too"]
    third, _, _ = read_chain(connector, cursor_after)
    assert {c.external_id for c in third} <= {str(ids[10]), str(ids[400])}  # bound re-read


@pytest.mark.parametrize("cut_page", [0, 1], ids=["first-page", "page-info-page"])
def test_a_capped_read_resumes_right_after_the_last_customer_processed(
    emulator: ShopifyEmulator, cut_page: int
):
    """A cap stops a page in its middle; the next sync resumes from the position of the last
    customer processed and gets exactly the rest of the chain's window: customers sharing the
    cut's updated_at included; customers changed between the two reads leave the window and
    come with the next chain."""
    ids = emulator.add_customers(700, ties=100)
    connector = connector_of(emulator)
    pages = [connector.fetch_page(ALL, "", datetime.now(UTC))]  # the window ends now
    pages.append(connector.fetch_page(ALL, pages[0].cursor, later()))
    page = pages[cut_page]
    cut = 120
    processed = [c for p in pages[:cut_page] for c in p.contacts] + page.contacts[: cut + 1]
    at = [emulator.customers[int(c.external_id)]["updated_at"] for c in page.contacts]
    assert at[cut - 1] == at[cut] == at[cut + 1]  # a tie across the cut
    time.sleep(1.1)  # so that an update gets a later second than the chain's window
    done_moved, moved, gone = (int(page.contacts[i].external_id) for i in (3, cut + 1, cut + 2))
    emulator.update(done_moved, first_name="Moved")  # read already: comes with the next chain
    emulator.update(moved, first_name="Moved too")  # not read yet: leaves this chain
    emulator.delete(gone)
    emulator.expire_page_infos()  # long behind a cap: a position needs no page_info
    emulator.requests.clear()

    position = page.contacts[cut].position
    assert position is not None
    rest, cursor, _ = read_chain(connector, position)

    assert [c.external_id for c in processed + rest] == [
        str(i) for i in ids if i not in (moved, gone)
    ]
    resumed = emulator.requests[0]
    assert resumed.query["since_id"] == page.contacts[cut].external_id
    assert "page_info" not in resumed.query and "updated_at_max" in resumed.query
    assert all(r.status == 200 for r in emulator.requests)
    next_chain, _, _ = read_chain(connector, cursor)
    assert sorted(c.first_name for c in next_chain) == ["Moved", "Moved too"]


def test_customers_out_of_id_order_carry_no_position(emulator: ShopifyEmulator):
    """Positions by id would pass over a customer then: after a cap the page comes again."""
    ids = emulator.add_customers(3)
    shuffled = [emulator.customers[i] for i in (ids[1], ids[0], ids[2])]
    emulator.faults.append((200, {}, {"customers": shuffled}))

    page = connector_of(emulator).fetch_page(ALL, "", later())

    assert [c.external_id for c in page.contacts] == [str(ids[1]), str(ids[0]), str(ids[2])]
    assert all(c.position is None for c in page.contacts)


def test_an_expired_page_info_reads_its_window_again_from_the_start(emulator: ShopifyEmulator):
    """A chain left behind a cap until Shopify forgot its page_info loses nothing."""
    ids = emulator.add_customers(600)
    connector = connector_of(emulator)
    first = connector.fetch_page(ALL, "", later())
    emulator.expire_page_infos()

    rest, _, _ = read_chain(connector, first.cursor)

    assert [c.external_id for c in rest] == [str(i) for i in ids]  # the window again, whole
    refused, restart, *_ = emulator.requests[1:]
    assert refused.status == 400 and "page_info" in refused.query
    assert restart.status == 200 and "page_info" not in restart.query
    assert "updated_at_min" not in restart.query  # the first chain's window had no start


def test_criteria_are_applied_to_consent_and_tags(emulator: ShopifyEmulator):
    ids = emulator.add_customers(20)
    emulator.customers[ids[1]]["tags"] = "vipx, old-vip"
    connector = connector_of(emulator)

    subscribed, _, _ = read_chain(connector, criteria=ShopifyCriteria(subscribed_only=True))
    tagged, _, _ = read_chain(connector, criteria=ShopifyCriteria(customer_tag="vip"))
    both, _, _ = read_chain(
        connector, criteria=ShopifyCriteria(subscribed_only=True, customer_tag="VIP")
    )

    customers = emulator.customers
    expect_subscribed = [
        str(i) for i in ids if customers[i]["email_marketing_consent"]["state"] == "subscribed"
    ]
    assert [c.external_id for c in subscribed] == expect_subscribed
    expect_tagged = [
        str(i) for i in ids if "vip" in [t.strip().lower() for t in customers[i]["tags"].split(",")]
    ]
    assert [c.external_id for c in tagged] == expect_tagged
    assert str(ids[1]) not in expect_tagged and len(expect_tagged) == 8
    assert [c.external_id for c in both] == [c for c in expect_tagged if c in expect_subscribed]


def test_customers_map_to_contacts_with_consent_and_fields(emulator: ShopifyEmulator):
    ids = emulator.add_customers(4)
    emulator.customers[ids[2]]["email"] = None
    contacts, _, _ = read_chain(connector_of(emulator))
    by_id = {c.external_id: c for c in contacts}

    first = by_id[str(ids[0])]
    assert (first.email, first.first_name, first.last_name, first.phone) == (
        "customer000000@example.com",
        "First0",
        "Last0",
        "+14155550000",
    )
    assert first.fields == {
        "total_spent": "0.00",
        "orders_count": "0",
        "tags": "vip, newsletter",
        "company": "Company 0",
        "country": "Germany",
    }
    assert not first.opted_out  # subscribed
    assert not by_id[str(ids[1])].opted_out  # not_subscribed
    assert by_id[str(ids[2])].opted_out and by_id[str(ids[2])].email == ""  # unsubscribed
    assert not by_id[str(ids[3])].opted_out  # pending
    assert "company" not in by_id[str(ids[1])].fields


def test_a_full_bucket_is_waited_for_and_never_hit_early(emulator: ShopifyEmulator):
    emulator.add_customers(10)
    emulator.fill_bucket()
    connector = connector_of(emulator)

    for _ in range(4):
        connector.fetch_page(ALL, "", later())

    statuses = [r.status for r in emulator.requests]
    assert statuses[0] == 429 and statuses.count(200) == 4
    assert emulator.early_retries == []
    assert statuses.count(429) == 1  # the call-limit header slowed it down before the next


def test_no_retry_waits_past_the_callers_deadline(emulator: ShopifyEmulator):
    emulator.add_customers(3)
    emulator.faults.append((429, {"Retry-After": "30.0"}, {"errors": "Exceeded 2 calls"}))

    with pytest.raises(RetryableError, match="rate limiting"):
        connector_of(emulator).fetch_page(ALL, "", later(), deadline=time.monotonic() + 5)

    assert [r.status for r in emulator.requests] == [429]  # not retried


def test_a_request_is_cut_to_the_callers_deadline(emulator: ShopifyEmulator):
    emulator.add_customers(3)
    emulator.delay = 2.0

    with pytest.raises(RetryableError) as raised:
        connector_of(emulator).fetch_page(ALL, "", later(), deadline=time.monotonic() + 0.3)

    assert str(raised.value) == DEADLINE_PASSED


def test_nothing_is_sent_after_the_callers_deadline(emulator: ShopifyEmulator):
    with pytest.raises(RetryableError) as raised:
        connector_of(emulator).fetch_page(ALL, "", later(), deadline=time.monotonic() - 1)

    assert str(raised.value) == DEADLINE_PASSED
    assert emulator.requests == []


def test_another_client_error_is_permanent_with_shopify_s_message(emulator: ShopifyEmulator):
    emulator.faults.append((422, {}, {"errors": {"updated_at_min": ["is invalid"]}}))
    with pytest.raises(PermanentError, match="updated_at_min is invalid"):
        connector_of(emulator).fetch_page(ALL, "", later())


# -- end to end: a real server reading the emulator ----------------------------------------


def test_a_rejected_token_fails_the_sync_and_the_log_never_shows_it(tmp_path: Path):
    with (
        ShopifyEmulator() as emulator,
        store_env("sqlite", tmp_path) as env,
        ServerProcess({**env, "AUTOIMPORT_SHOPIFY_URL": emulator.url}) as server,
        server.client(server.admin_token) as admin,
    ):
        wrong = "shpat_revoked_token_that_must_never_be_logged"
        created = new_import(
            admin,
            "shopify",
            emulator.shop,
            pb.Credentials(access_token=wrong),
            contact_limit=100,
        )
        report = admin.imports.TriggerSync(pb.TriggerSyncRequest(name=created.name), timeout=60)

        assert report.outcome == pb.SyncReport.FAILED
        assert "Shopify rejected the credentials: reconnect the account" in report.error
        server.terminate()
        assert wrong not in "".join(server.output)
        assert wrong not in str(report)


def test_a_sync_ends_with_its_callers_deadline_and_the_next_one_completes(tmp_path: Path):
    """A sync does not outlive its caller (holding the import), and nothing is lost."""
    with (
        ShopifyEmulator() as emulator,
        store_env("sqlite", tmp_path) as env,
        ServerProcess({**env, "AUTOIMPORT_SHOPIFY_URL": emulator.url}) as server,
        server.client(server.admin_token) as admin,
    ):
        emulator.add_customers(450)
        emulator.delay = 3.0
        created = new_import(
            admin,
            "shopify",
            emulator.shop,
            pb.Credentials(access_token=emulator.access_token),
            contact_limit=1000,
        )
        request = pb.TriggerSyncRequest(name=created.name)

        stopped = admin.imports.TriggerSync(request, timeout=1.5)

        # The sync stopped a moment before the deadline, so its report still came back.
        assert (stopped.outcome, stopped.error) == (pb.SyncReport.FAILED, DEADLINE_PASSED)
        last = admin.imports.GetImport(pb.GetImportRequest(name=created.name)).last_sync
        assert last.sync_id == stopped.sync_id
        emulator.delay = 0.0
        report = admin.imports.TriggerSync(request, timeout=60)
        assert (report.outcome, report.added) == (pb.SyncReport.COMPLETED, 450)


def test_the_emulator_links_back_from_page_two(emulator: ShopifyEmulator):
    emulator.add_customers(600)
    headers = {"X-Shopify-Access-Token": emulator.access_token}
    url = f"{emulator.url}/admin/api/2025-01/customers.json"
    first = httpx.get(url, params={"limit": 250}, headers=headers)
    assert 'rel="previous"' not in first.headers["Link"]
    page_info = shopify.next_page_info(first.headers["Link"])
    second = httpx.get(url, params={"limit": 250, "page_info": page_info}, headers=headers)
    links = dict(
        (part.split(";")[1].strip(), httpx.URL(part.split(";")[0].strip(" <>")))
        for part in second.headers["Link"].split(", ")
    )
    assert set(links) == {'rel="previous"', 'rel="next"'}
    back = httpx.get(links['rel="previous"'], headers=headers)
    assert back.json() == first.json()
    assert shopify.next_page_info(second.headers["Link"]) == links['rel="next"'].params["page_info"]


# -- the connection check ----------------------------------------------------------------------


def checked(emulator: ShopifyEmulator, shop: str | None = None) -> dict[str, Finding]:
    return findings_of(connector_of(emulator), ALL, shop or emulator.shop)


def test_the_check_reads_the_granted_scopes_and_names_the_one_missing(emulator: ShopifyEmulator):
    emulator.scopes = ["read_orders", "write_products"]

    scopes = checked(emulator)["scopes"]

    assert not scopes.ok
    assert "read_customers" in scopes.detail and "read_orders, write_products" in scopes.detail
    assert [r.path for r in emulator.recorded()] == [shopify.SHOP_PATH, shopify.SCOPES_PATH]


def test_the_check_takes_write_customers_for_reading_them(emulator: ShopifyEmulator):
    emulator.scopes = ["write_customers"]

    assert checked(emulator)["scopes"].ok


def test_the_check_compares_the_shop_by_its_handle(emulator: ShopifyEmulator):
    assert checked(emulator, "Emulated-Shop.myshopify.com")["external account"].ok


def test_the_check_reports_the_call_bucket_s_level(emulator: ShopifyEmulator):
    emulator.leak_per_second = 0.0  # the level stays where the check left it

    quota = checked(emulator)["quota"]

    assert quota.ok and quota.detail.startswith("2 of the 40 calls")


def test_the_check_says_when_the_bucket_is_full(emulator: ShopifyEmulator):
    emulator.leak_per_second = 0.0
    emulator.bucket_size = 2

    quota = checked(emulator)["quota"]

    assert not quota.ok and quota.detail.startswith("2 of the 2 calls")

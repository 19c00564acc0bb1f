"""The HubSpot connector against the HubSpot emulator (real HTTP on loopback), and syncs of a
HubSpot import through a real server process reading the emulator."""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors import http, hubspot
from connectors.base import Finding, PermanentError, RetryableError
from connectors.hubspot import HubSpotConnector, HubSpotCriteria
from domain.sync import ContactPage, ExternalContact
from emulators.hubspot import (
    SEARCH_PATH,
    HubSpotEmulator,
    error_body,
    rate_limit_body,
)
from emulators.server import Fault
from tests.connectors.contract import (
    findings_of,
    ids_of,
    quick_backoff,  # noqa: F401  (an autouse fixture)
    read_chain,
)

ALL = HubSpotCriteria()
# Contacts of these tests were modified a day ago, unless a test says otherwise.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


@pytest.fixture
def emulator() -> Iterator[HubSpotEmulator]:
    with HubSpotEmulator() as emulator:
        yield emulator


def connector_of(emulator: HubSpotEmulator, token: str | None = None) -> HubSpotConnector:
    return HubSpotConnector(token or emulator.access_token, base_url=emulator.url)


def bound() -> datetime:
    """A sync's upper bound, as the engine sets it."""
    return datetime.now(UTC) - HubSpotConnector.lag


# Each connector's reads to a sync's bound, of every contact.
read_chain = functools.partial(read_chain, criteria=ALL, until=bound)


def searches(emulator: HubSpotEmulator) -> list[dict[str, Any]]:
    return [r.body for r in emulator.requests if r.path == SEARCH_PATH]


def test_pages_through_ties_each_exactly_once(emulator: HubSpotEmulator):
    ids = emulator.add_contacts(1000, ties=70, modified_at=BASE)  # pages end inside ties
    ids += emulator.add_contacts(450, ties=450, modified_at=BASE + timedelta(hours=1))
    ids += emulator.add_contacts(130, ties=30, modified_at=BASE + timedelta(hours=2))

    contacts, cursor, pages = read_chain(connector_of(emulator))

    assert Counter(ids_of(contacts)) == Counter(ids)
    assert all(json.loads(c.position or "")["done"] is False for c in contacts)
    assert json.loads(cursor)["done"] is True and not pages[-1].has_more
    bodies = searches(emulator)
    assert all(b["after"] == "0" and b["limit"] == 200 for b in bodies)
    sorted_by = [b["sorts"][0]["propertyName"] for b in bodies]
    assert sorted_by.count("hs_object_id") == 3  # the 450 that share a millisecond, by id
    assert all(r.status == 200 for r in emulator.requests)
    assert emulator.early_retries == [] and emulator.max_searches_in_any_second() <= 5


def test_12000_contacts_sharing_one_millisecond_all_arrive_once_without_a_400(
    emulator: HubSpotEmulator, monkeypatch: pytest.MonkeyPatch
):
    # 60 searches: faster than the real limit (both sides) to keep the test short.
    monkeypatch.setattr(hubspot, "SEARCHES_PER_SECOND", 1000.0)
    emulator.searches_per_second = 10_000
    ids = emulator.add_contacts(12_000, ties=12_000, modified_at=BASE)
    ids += emulator.add_contacts(20, ties=5, modified_at=BASE + timedelta(minutes=1))

    contacts, _, _ = read_chain(connector_of(emulator))

    assert Counter(ids_of(contacts)) == Counter(ids)
    assert {r.status for r in emulator.requests} == {200}
    assert all(b["after"] == "0" for b in searches(emulator))


def test_the_emulator_refuses_a_page_past_the_10000th_result(emulator: HubSpotEmulator):
    emulator.add_contacts(10_050, ties=10_050, modified_at=BASE)
    headers = {"Authorization": f"Bearer {emulator.access_token}"}

    def search(after: str) -> httpx.Response:
        body = {"limit": 200, "after": after, "properties": ["email"]}
        return httpx.post(f"{emulator.url}{SEARCH_PATH}", json=body, headers=headers)

    last_allowed = search("9800")
    assert last_allowed.status_code == 200
    assert last_allowed.json()["paging"]["next"]["after"] == "10000"
    assert last_allowed.json()["total"] == 10_050
    for after in ("9900", "10000"):
        refused = search(after)
        assert refused.status_code == 400
        body = refused.json()
        assert body["status"] == "error" and body["category"] == "VALIDATION_ERROR"
        assert body["correlationId"] and "10000" in body["message"]


def test_the_emulator_validates_searches_as_hubspot_does(emulator: HubSpotEmulator):
    emulator.searches_per_second = 1000  # direct requests, not paced
    ids = emulator.add_contacts(60)  # ids pass 100000: numeric order differs from text order
    emulator.archive(ids[0])
    headers = {"Authorization": f"Bearer {emulator.access_token}"}
    one = {"propertyName": "email", "operator": "HAS_PROPERTY"}

    def search(**body: object) -> httpx.Response:
        return httpx.post(f"{emulator.url}{SEARCH_PATH}", json=body, headers=headers)

    assert search(filterGroups=[{"filters": [one]}] * 6).status_code == 400
    assert search(filterGroups=[{"filters": [one] * 7}]).status_code == 400
    assert search(filterGroups=[{"filters": [one] * 5}] * 4).status_code == 400  # 20 > 18
    assert search(filterGroups=[{"filters": [one] * 6}] * 3).status_code == 200  # 18
    two_sorts = [{"propertyName": "email"}, {"propertyName": "createdate"}]
    assert search(sorts=two_sorts).status_code == 400
    assert search(limit=201).status_code == 400
    list_cursor = search(after="MTAwNDUx")
    assert list_cursor.status_code == 400 and "Cannot deserialize" in list_cursor.text
    default = search()
    assert default.status_code == 200 and "x-hubspot-ratelimit-max" not in default.headers
    assert [r["id"] for r in default.json()["results"]] == ids[1:11]  # never the archived
    assert set(default.json()["results"][0]["properties"]) == {
        "createdate",
        "email",
        "firstname",
        "lastname",
        "lastmodifieddate",
        "hs_object_id",
    }
    numeric = search(
        filterGroups=[
            {"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": "99999"}]}
        ],
        limit=200,
    )
    above = {i for i in ids[1:] if int(i) > 99999}
    assert above and {r["id"] for r in numeric.json()["results"]} == above

    url = f"{emulator.url}/crm/v3/objects/contacts"
    archived = httpx.get(url, params={"archived": "true"}, headers=headers).json()
    assert [r["id"] for r in archived["results"]] == [ids[0]]
    assert archived["results"][0]["archived"] is True
    listed = httpx.get(url, params={"limit": 2}, headers=headers).json()
    rest = httpx.get(
        url, params={"limit": 2, "after": listed["paging"]["next"]["after"]}, headers=headers
    ).json()
    assert [r["id"] for r in listed["results"] + rest["results"]] == ids[1:5]
    assert httpx.get(url, params={"limit": 101}, headers=headers).status_code == 400


def test_a_contact_modified_during_a_chain_makes_no_other_one_skipped(
    emulator: HubSpotEmulator,
):
    step = timedelta(minutes=1)
    ids = emulator.add_contacts(600, ties=1, step=step, modified_at=BASE)
    until = BASE + 700 * step
    connector = connector_of(emulator)
    first = connector.fetch_page(ALL, "", until)
    assert ids_of(first.contacts) == ids[:200]
    # Offsets would shift: one read and one unread contact leave the window (past the bound).
    emulator.update(ids[10], modified_at=until + step, firstname="Moved")
    emulator.update(ids[300], modified_at=until + step, firstname="Moved too")

    rest, cursor, _ = read_chain(connector, first.cursor, until=until)

    first_chain = ids_of(first.contacts + rest)
    assert Counter(first_chain) == Counter(i for i in ids if i != ids[300])
    next_chain, _, _ = read_chain(connector, cursor, until=until + 2 * step)
    moved = [c for c in next_chain if c.first_name.startswith("Moved")]
    assert sorted(ids_of(moved)) == sorted([ids[10], ids[300]])
    lookback = hubspot.LOOKBACK // step
    assert set(ids_of(next_chain)) == {ids[10], ids[300], *ids[600 - lookback - 1 :]}


def test_a_page_read_again_gives_its_contacts_again_and_loses_none(emulator: HubSpotEmulator):
    """After a cap the engine fetches a page again from the same cursor (GTE, never GT)."""
    ids = emulator.add_contacts(500, ties=70, modified_at=BASE)
    connector = connector_of(emulator)
    first = connector.fetch_page(ALL, "", bound())
    state = json.loads(first.cursor)
    assert 0 < len(state["seen"]) < 70  # the page ended inside a tie group
    # A contact indexed late, stamped with the very millisecond the cursor stopped at.
    since = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=state["since"])
    late = emulator.add_contacts(1, modified_at=since)

    cursor, read, reread = first.cursor, ids_of(first.contacts), []
    while True:
        page = connector.fetch_page(ALL, cursor, bound())
        again = connector.fetch_page(ALL, cursor, bound() + timedelta(hours=1))
        assert ids_of(again.contacts) == ids_of(page.contacts)
        assert again.cursor == page.cursor
        read += ids_of(page.contacts)
        reread += ids_of(again.contacts)
        cursor = page.cursor
        if not page.has_more:
            break

    assert Counter(read) == Counter(ids + late)
    assert set(reread) <= set(read)


@pytest.mark.parametrize("ties", [70, 450], ids=["cut-in-a-time-page", "cut-in-a-tie-sweep"])
def test_a_capped_read_resumes_right_after_the_last_contact_processed(
    emulator: HubSpotEmulator, ties: int
):
    """A cap stops a page in its middle; the next sync resumes from the position of the last
    contact processed and gets exactly the rest: contacts sharing the cut's millisecond that
    come after it, and contacts changed between the two reads, included."""
    step = timedelta(minutes=1)
    ids = emulator.add_contacts(900, ties=ties, step=step, modified_at=BASE)
    until = BASE + timedelta(hours=1)
    connector = connector_of(emulator)
    processed: list[ExternalContact] = []
    cursor = ""
    while True:  # the first page of the time phase, or the first page of the id-ordered sweep
        page = connector.fetch_page(ALL, cursor, until)
        sweeping = json.loads(page.contacts[0].position or "null")["tie_after"] is not None
        if (ties == 70) != sweeping:
            break
        processed += page.contacts
        cursor = page.cursor
    cut = len(page.contacts) // 2
    processed += page.contacts[: cut + 1]
    modified = [
        emulator.contacts[c.external_id]["properties"]["lastmodifieddate"] for c in page.contacts
    ]
    assert modified[cut - 1] == modified[cut] == modified[cut + 1]  # a tie across the cut
    done_moved, tie_moved, later = (page.contacts[i].external_id for i in (1, cut + 1, cut + 2))
    emulator.update(done_moved, modified_at=until + step, firstname="Moved")  # out of the chain
    emulator.update(tie_moved, modified_at=until + step, firstname="Moved")  # out, unread
    emulator.update(later, modified_at=BASE + 50 * step, firstname="Later")  # unread, moves on

    position = page.contacts[cut].position
    assert position is not None
    rest, next_cursor, _ = read_chain(connector, position, until=until)

    assert Counter(ids_of(processed + rest)) == Counter(i for i in ids if i != tie_moved)
    assert [c.first_name for c in rest if c.external_id == later] == ["Later"]
    next_chain, _, _ = read_chain(connector, next_cursor, until=until + 2 * step)
    assert {done_moved, tie_moved} <= set(ids_of(next_chain))


def test_each_new_chain_reads_again_the_last_minutes_of_the_previous_one(
    emulator: HubSpotEmulator,
):
    step = timedelta(minutes=1)
    old = emulator.add_contacts(50, ties=50, modified_at=BASE)
    recent = emulator.add_contacts(20, ties=1, step=step, modified_at=BASE + timedelta(hours=1))
    connector = connector_of(emulator)
    first, cursor, _ = read_chain(connector)
    assert Counter(ids_of(first)) == Counter(old + recent)

    second, cursor, _ = read_chain(connector, cursor)
    third, _, _ = read_chain(connector, cursor)

    lookback = hubspot.LOOKBACK // step  # 10: contacts within it of the last one
    assert ids_of(second) == recent[19 - lookback :]
    assert ids_of(third) == ids_of(second)  # a steady state: no creeping either way


def test_chains_do_not_start_further_back_when_the_last_contact_is_archived(
    emulator: HubSpotEmulator,
):
    ids = emulator.add_contacts(5, ties=1, step=timedelta(minutes=1), modified_at=BASE)
    last = emulator.add_contacts(1, modified_at=BASE + timedelta(hours=1))
    connector = connector_of(emulator)
    _, cursor, _ = read_chain(connector)
    end = json.loads(cursor)["since"]
    emulator.archive(last[0])

    for _ in range(3):
        contacts, cursor, _ = read_chain(connector, cursor)
        assert contacts == [] and json.loads(cursor)["since"] == end
    emulator.update(ids[0], firstname="Changed")  # modified now: after the end
    contacts, _, _ = read_chain(connector, cursor)
    assert ids_of(contacts) == [ids[0]]


def test_a_contact_missing_from_the_index_is_read_by_the_next_chain(emulator: HubSpotEmulator):
    step = timedelta(minutes=1)
    ids = emulator.add_contacts(30, ties=1, step=step, modified_at=BASE)
    emulator.index_lag = 0.5  # seconds before search sees a change
    late = emulator.add_contacts(1, modified_at=BASE + 25 * step + timedelta(seconds=30))
    emulator.update(ids[27], modified_at=BASE + 28 * step + timedelta(seconds=30), lastname="New")
    connector = connector_of(emulator)

    first, cursor, _ = read_chain(connector)
    assert late[0] not in ids_of(first)
    assert [c.last_name for c in first if c.external_id == ids[27]] == ["Last27"]  # as it was

    time.sleep(emulator.index_lag + 0.1)
    second, _, _ = read_chain(connector, cursor)

    assert late[0] in ids_of(second)
    assert [c.last_name for c in second if c.external_id == ids[27]] == ["New"]


def test_the_bound_going_back_reads_nothing_and_keeps_the_cursor(emulator: HubSpotEmulator):
    emulator.add_contacts(10, modified_at=BASE)
    connector = connector_of(emulator)
    _, cursor, _ = read_chain(connector)
    page = connector.fetch_page(ALL, cursor, BASE - timedelta(hours=1))
    assert page == ContactPage(contacts=[], cursor=cursor, has_more=False)


def test_an_unreadable_cursor_is_permanent(emulator: HubSpotEmulator):
    with pytest.raises(PermanentError, match="recreate the import"):
        connector_of(emulator).fetch_page(ALL, '{"since": "yesterday"}', bound())


def test_a_lifecycle_stage_criteria_is_a_search_filter(emulator: HubSpotEmulator):
    ids = emulator.add_contacts(60, ties=7, modified_at=BASE)
    customers = [
        i for i in ids if emulator.contacts[i]["properties"]["lifecyclestage"] == "customer"
    ]

    contacts, _, _ = read_chain(connector_of(emulator), criteria=HubSpotCriteria("customer"))

    assert customers and sorted(ids_of(contacts)) == sorted(customers)
    assert all(c.fields["lifecycle_stage"] == "customer" for c in contacts)
    filters = searches(emulator)[0]["filterGroups"][0]["filters"]
    assert {"propertyName": "lifecyclestage", "operator": "EQ", "value": "customer"} in filters


def test_contacts_map_with_opt_out_and_fields(emulator: HubSpotEmulator):
    ids = emulator.add_contacts(8, modified_at=BASE)
    contacts, _, _ = read_chain(connector_of(emulator))
    by_id = {c.external_id: c for c in contacts}

    first = by_id[ids[0]]
    assert (first.email, first.first_name, first.last_name, first.phone) == (
        "contact000000@example.com",
        "First0",
        "Last0",
        "+14155550000",
    )
    assert first.fields == {"company": "Company 0", "lifecycle_stage": "lead"}
    assert not first.opted_out
    assert first.position is not None and json.loads(first.position)["seen"][-1] == ids[0]
    assert by_id[ids[1]].fields == {"job_title": "Buyer", "lifecycle_stage": "subscriber"}
    assert by_id[ids[1]].phone == ""
    assert by_id[ids[4]].opted_out  # hs_email_optout "true": unsubscribed from all email
    assert by_id[ids[5]].fields == {"job_title": "Head of Marketing"}  # no lifecycle stage
    assert by_id[ids[7]].email == ""
    requested = searches(emulator)[0]["properties"]
    assert set(requested) == {
        "email",
        "firstname",
        "lastname",
        "phone",
        "company",
        "jobtitle",
        "lifecyclestage",
        "hs_email_optout",
        "lastmodifieddate",
        "hs_object_id",
    }
    assert searches(emulator)[0]["sorts"] == [
        {"propertyName": "lastmodifieddate", "direction": "ASCENDING"}
    ]


def test_searches_are_spaced_below_five_a_second(emulator: HubSpotEmulator):
    emulator.add_contacts(10, modified_at=BASE)
    connector = connector_of(emulator)
    for _ in range(8):
        connector.fetch_page(ALL, "", bound())
    assert {r.status for r in emulator.requests} == {200}
    assert emulator.max_searches_in_any_second() <= 5


def test_imports_of_one_portal_syncing_at_once_share_its_rate(emulator: HubSpotEmulator):
    emulator.add_contacts(10, modified_at=BASE)
    portal = f"portal-{uuid.uuid4().hex[:8]}"
    connectors = [
        HubSpotConnector(emulator.access_token, base_url=emulator.url, portal=portal)
        for _ in range(3)
    ]

    def read_four_times(connector: HubSpotConnector) -> None:
        for _ in range(4):
            connector.fetch_page(ALL, "", bound())

    readers = [threading.Thread(target=read_four_times, args=(c,)) for c in connectors]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()

    assert len(emulator.requests) == 12
    assert {r.status for r in emulator.requests} == {200}  # never throttled
    assert emulator.max_searches_in_any_second() <= 5


def test_a_secondly_429_is_waited_for_and_never_retried_early(emulator: HubSpotEmulator):
    emulator.add_contacts(10, modified_at=BASE)
    emulator.saturate()  # this second's five searches are used up

    page = connector_of(emulator).fetch_page(ALL, "", bound())

    assert len(page.contacts) == 10
    assert [r.status for r in emulator.requests] == [429, 200]
    assert emulator.early_retries == [] and emulator.max_searches_in_any_second() <= 5


def test_a_ten_secondly_429_waits_for_the_window_to_roll(
    emulator: HubSpotEmulator, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(hubspot, "TEN_SECONDLY_WAIT", 0.5)
    emulator.ten_secondly_window = 0.5  # the emulator's window, shortened alike
    emulator.add_contacts(10, modified_at=BASE)
    emulator.faults.append((429, {}, rate_limit_body("TEN_SECONDLY_ROLLING")))
    emulator.faults.append((429, {"Retry-After": "0.3"}, rate_limit_body("SECONDLY")))

    page = connector_of(emulator).fetch_page(ALL, "", bound())

    assert len(page.contacts) == 10
    assert [r.status for r in emulator.requests] == [429, 429, 200]
    assert emulator.early_retries == [] and emulator.max_searches_in_any_second() <= 5


def test_the_daily_limit_ends_the_sync_without_a_retry(emulator: HubSpotEmulator):
    emulator.faults.append((429, {}, rate_limit_body("DAILY")))
    with pytest.raises(RetryableError) as raised:
        connector_of(emulator).fetch_page(ALL, "", bound())
    assert "daily API limit" in str(raised.value) and "midnight" in str(raised.value)
    assert len(emulator.requests) == 1


def test_an_account_migration_477_is_retried_like_a_server_error(emulator: HubSpotEmulator):
    emulator.add_contacts(3, modified_at=BASE)
    emulator.faults.append((477, {}, error_body("Portal is being migrated", "MIGRATION")))

    page = connector_of(emulator).fetch_page(ALL, "", bound())

    assert len(page.contacts) == 3
    assert [r.status for r in emulator.requests] == [477, 200]


def test_a_migration_that_outlasts_the_retries_ends_the_sync_as_retryable(
    emulator: HubSpotEmulator,
):
    """The same cursor reads the page at the next sync."""
    emulator.add_contacts(3, modified_at=BASE)
    for _ in range(http.ATTEMPTS):
        emulator.faults.append((477, {}, error_body("Portal is being migrated", "MIGRATION")))
    connector = connector_of(emulator)

    with pytest.raises(RetryableError, match="migrating"):
        connector.fetch_page(ALL, "", bound())
    page = connector.fetch_page(ALL, "", bound())

    assert len(page.contacts) == 3
    assert [r.status for r in emulator.requests] == [477] * http.ATTEMPTS + [200]


def test_another_client_error_is_permanent_with_hubspot_s_message(emulator: HubSpotEmulator):
    message = 'Property "lifecyclestage" does not exist'
    detail = [{"message": "property lifecyclestage unknown", "code": "INVALID_PROPERTY"}]
    emulator.faults.append((400, {}, error_body(message, "VALIDATION_ERROR", errors=detail)))
    with pytest.raises(PermanentError) as raised:
        connector_of(emulator).fetch_page(ALL, "", bound())
    assert str(raised.value) == f"HubSpot refused the request (HTTP 400): {message}"


# -- the connection check ----------------------------------------------------------------------


def checked(
    emulator: HubSpotEmulator, portal: str | None = None, criteria: HubSpotCriteria = ALL
) -> dict[str, Finding]:
    return findings_of(connector_of(emulator), criteria, portal or emulator.portal_id)


def test_the_check_says_an_oauth_token_gets_no_daily_limit_headers(emulator: HubSpotEmulator):
    emulator.oauth = True

    quota = checked(emulator)["quota"]

    assert quota.ok and "OAuth" in quota.detail


def test_the_check_reads_the_daily_limit_left_from_the_account_details(emulator: HubSpotEmulator):
    quota = checked(emulator)["quota"]

    assert quota.ok and quota.detail == "249999 of the 250000 API calls a day are left"


def test_the_check_fails_the_quota_when_the_daily_limit_is_reached(emulator: HubSpotEmulator):
    emulator.fail(Fault(429, {}, rate_limit_body("DAILY"), path=SEARCH_PATH))

    findings = checked(emulator)

    assert not findings["quota"].ok and findings["quota"].detail == hubspot.DAILY_LIMIT_MESSAGE
    assert not findings["scopes"].ok and findings["credentials"].ok


def test_the_check_names_the_missing_contacts_scope(emulator: HubSpotEmulator):
    emulator.scopes = set()

    scopes = checked(emulator)["scopes"]

    assert not scopes.ok and "crm.objects.contacts.read" in scopes.detail


def test_the_check_compares_portals_as_numbers_and_searches_with_the_criteria(
    emulator: HubSpotEmulator,
):
    findings = checked(emulator, "00" + emulator.portal_id, HubSpotCriteria("customer"))

    assert findings["external account"].ok
    (search,) = searches(emulator)
    assert search["limit"] == 1
    assert search["filterGroups"][0]["filters"][0]["value"] == "customer"

"""The Google Contacts connector against the People API emulator (real HTTP on loopback), and
syncs of a Google Contacts import through a real server process reading the emulator."""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2

from autoimport.v1 import imports_pb2 as pb
from connectors import google_contacts, http
from connectors.base import (
    CONNECTION_CHECKS,
    NOT_TRIED,
    AuthError,
    Finding,
    PermanentError,
    ReauthRequired,
    RetryableError,
)
from connectors.google_contacts import GoogleContactsConnector, GoogleContactsCriteria
from domain.import_settings import Credentials
from domain.sync import ExternalContact
from emulators.google_contacts import (
    EMAIL_SCOPE,
    MY_CONTACTS,
    OTHER_GROUP,
    PATH,
    RATE_LIMITED_403,
    TOKEN_PATH,
    GoogleContactsEmulator,
    error_info,
    status_body,
    unauthenticated,
)
from emulators.server import Fault
from tests.conftest import STORES
from tests.connectors.contract import (
    ids_of,
    quick_backoff,  # noqa: F401  (an autouse fixture)
    read_chain,
)
from tests.connectors.harness_google_contacts import import_in, settings_of
from tests.support import (
    ServerProcess,
    account_of,
    all_contacts,
    store_env,
)

ALL = GoogleContactsCriteria()
EXPIRED_REASON = "Sync token is expired. Clear local cache and retry call without the sync token."


@pytest.fixture
def emulator() -> Iterator[GoogleContactsEmulator]:
    with GoogleContactsEmulator() as emulator:
        yield emulator


def connector_of(
    emulator: GoogleContactsEmulator,
    credentials: Credentials | None = None,
    /,
    **settings: str,
) -> GoogleContactsConnector:
    return GoogleContactsConnector(
        credentials or Credentials(emulator.access_token, emulator.refresh_token),
        base_url=settings.get("base_url", emulator.url),
        oauth_url=settings.get("oauth_url", emulator.url),
        client_id=settings.get("client_id", emulator.client_id),
        client_secret=settings.get("client_secret", emulator.client_secret),
    )


def now() -> datetime:
    return datetime.now(UTC)


# Each connector's reads (Google has no bound to read to), of everyone.
read_chain = functools.partial(read_chain, criteria=ALL, until=now)
ids = ids_of


def chain_params(request: Any) -> dict[str, str]:
    return {k: v for k, v in request.query.items() if k not in ("pageToken", "syncToken")}


# -- reading: full and incremental chains ----------------------------------------------------


def test_a_full_sync_reads_everyone_once_in_pages_of_1000_and_ends_with_a_sync_token(
    emulator: GoogleContactsEmulator,
):
    names = emulator.add_people(2500)
    connector = connector_of(emulator)

    contacts, cursor, pages = read_chain(connector)

    assert GoogleContactsConnector.lag == timedelta(0)
    assert ids(contacts) == names  # each once, in Google's order
    assert [len(p.contacts) for p in pages] == [1000, 1000, 500]
    assert [p.has_more for p in pages] == [True, True, False]
    assert all(p.credentials is None for p in pages)
    state = json.loads(cursor)
    assert set(state) == {"sync_token", "page_token"} and state["page_token"] == ""
    assert state["sync_token"]
    assert cursor == json.dumps(state, sort_keys=True)
    middle = json.loads(pages[0].cursor)
    assert middle["sync_token"] == "" and middle["page_token"]
    requests = emulator.people_requests()
    assert [r.status for r in requests] == [200, 200, 200]
    assert "pageToken" not in requests[0].query and "syncToken" not in requests[0].query
    assert all("pageToken" in r.query for r in requests[1:])
    assert requests[0].query == {
        "personFields": "names,emailAddresses,phoneNumbers,organizations,birthdays,"
        "memberships,metadata",
        "pageSize": "1000",
        "requestSyncToken": "true",
    }
    assert all(chain_params(r) == requests[0].query for r in requests)


def test_an_incremental_sync_reads_exactly_the_updates_additions_and_deletions(
    emulator: GoogleContactsEmulator,
):
    names = emulator.add_people(300)
    connector = connector_of(emulator)
    _, cursor, _ = read_chain(connector)
    emulator.update(names[4], given_name="Renamed")
    emulator.update(names[10], company="New Co", job_title="CTO")
    added = emulator.add_people(2)
    emulator.delete(names[20])
    emulator.delete(names[21])
    emulator.requests.clear()

    contacts, next_cursor, pages = read_chain(connector, cursor)

    by_id = {c.external_id: c for c in contacts}
    assert sorted(by_id) == sorted([names[4], names[10], *added, names[20], names[21]])
    assert len(contacts) == 6 and len(pages) == 1
    assert by_id[names[4]].first_name == "Renamed" and not by_id[names[4]].deleted
    assert by_id[names[10]].fields["company"] == "New Co"
    assert by_id[names[10]].fields["job_title"] == "CTO"
    for gone in (names[20], names[21]):
        tombstone = replace(by_id[gone], position=None)  # a tombstone has a position too
        assert tombstone == ExternalContact(external_id=gone, email="", deleted=True)
    assert [c.deleted for c in contacts].count(True) == 2
    (request,) = emulator.people_requests()
    assert request.query["syncToken"] == json.loads(cursor)["sync_token"]
    assert chain_params(request) == google_contacts.CHAIN_PARAMS
    assert json.loads(next_cursor)["sync_token"] != json.loads(cursor)["sync_token"]

    nothing, last_cursor, _ = read_chain(connector, next_cursor)
    assert nothing == [] and json.loads(last_cursor)["page_token"] == ""


def test_an_incremental_chain_of_many_changes_is_paged_and_binds_its_parameters(
    emulator: GoogleContactsEmulator,
):
    names = emulator.add_people(1500)
    connector = connector_of(emulator)
    _, cursor, _ = read_chain(connector)
    for name in names[:1200]:
        emulator.update(name, family_name="Changed")
    emulator.requests.clear()

    contacts, _, pages = read_chain(connector, cursor)

    assert sorted(ids(contacts)) == sorted(names[:1200])
    assert all(c.last_name == "Changed" for c in contacts)
    assert [len(p.contacts) for p in pages] == [1000, 200]
    first, second = emulator.people_requests()
    assert "pageToken" not in first.query and {"pageToken", "syncToken"} <= set(second.query)
    assert first.query["syncToken"] == second.query["syncToken"]
    assert chain_params(first) == chain_params(second) == google_contacts.CHAIN_PARAMS
    assert all(r.status == 200 for r in emulator.requests)


def test_a_contact_changed_during_a_chain_comes_with_the_next_chain(
    emulator: GoogleContactsEmulator,
):
    names = emulator.add_people(1500)
    connector = connector_of(emulator)
    first = connector.fetch_page(ALL, "", now())
    emulator.update(names[10], given_name="Early")  # already read
    emulator.update(names[1400], given_name="Late")  # not read yet
    rest, cursor, _ = read_chain(connector, first.cursor)
    assert sorted(ids(first.contacts + rest)) == sorted(names)

    changes, _, _ = read_chain(connector, cursor)

    assert sorted((c.external_id, c.first_name) for c in changes) == sorted(
        [(names[10], "Early"), (names[1400], "Late")]
    )


@pytest.mark.parametrize("incremental", [False, True], ids=["full-sync", "incremental"])
def test_a_capped_read_resumes_right_after_the_last_contact_processed(
    emulator: GoogleContactsEmulator, incremental: bool
):
    """A cap stops a page (here one reached by a page token) in its middle; the next sync
    resumes from the position of the last contact processed and gets exactly the rest, though
    persons on both sides of the cut, the last one processed included, changed or were deleted
    between the two reads: those come with the next chain."""
    names = emulator.add_people(2500)
    connector = connector_of(emulator)
    cursor = ""
    if incremental:
        _, cursor, _ = read_chain(connector)
        for name in names:  # an incremental chain of three pages, in the order of change
            emulator.update(name, family_name="Changed")
    first = connector.fetch_page(ALL, cursor, now())
    page = connector.fetch_page(ALL, first.cursor, now())
    assert json.loads(first.cursor)["page_token"] and page.has_more
    cut = 300
    processed = first.contacts + page.contacts[: cut + 1]
    around = [page.contacts[i].external_id for i in range(cut - 2, cut + 4)]
    emulator.delete(around[2])  # the last one processed
    emulator.delete(around[3])  # the first one not processed
    emulator.update(around[1], given_name="Changed before")
    emulator.update(around[4], given_name="Changed after")
    emulator.requests.clear()

    position = page.contacts[cut].position
    assert position is not None
    rest, next_cursor, _ = read_chain(connector, position)

    gone = {around[3]} | ({around[4]} if incremental else set())  # changes leave a sync chain
    expected = [c.external_id for c in first.contacts + page.contacts] + names[2000:]
    assert ids(processed + rest) == [n for n in expected if n not in gone]
    assert (
        emulator.people_requests()[0].query["pageToken"] == json.loads(first.cursor)["page_token"]
    )
    changes, _, _ = read_chain(connector, next_cursor)
    assert {c.external_id for c in changes if c.deleted} == {around[2], around[3]}
    assert {c.first_name for c in changes if not c.deleted} == {"Changed before", "Changed after"}


def test_a_capped_read_of_a_chain_s_first_page_resumes_after_the_last_contact_processed(
    emulator: GoogleContactsEmulator,
):
    """The first page has no page token: asking for it again starts a new chain, whose sync
    token covers every change made meanwhile. So the cut is kept only while the persons read
    before it are unchanged; otherwise the page comes again whole, and nothing is lost."""
    names = emulator.add_people(1500)
    connector = connector_of(emulator)
    first = connector.fetch_page(ALL, "", now())
    cut = 400
    position = first.contacts[cut].position
    assert position is not None

    rest, _, _ = read_chain(connector, position)

    assert ids(first.contacts[: cut + 1] + rest) == names

    emulator.update(names[5], given_name="Changed")  # read before the cut
    again, _, _ = read_chain(connector, position)
    assert ids(again) == names
    assert [c.first_name for c in again if c.external_id == names[5]] == ["Changed"]


def test_a_capped_read_of_a_contact_group_resumes_after_the_last_member_processed(
    emulator: GoogleContactsEmulator,
):
    names = emulator.add_people(2500)
    group = GoogleContactsCriteria(contact_group=OTHER_GROUP)
    connector = connector_of(emulator)
    first = connector.fetch_page(group, "", now())
    page = connector.fetch_page(group, first.cursor, now())
    cut = 100
    position = page.contacts[cut].position
    assert position is not None

    rest, _, _ = read_chain(connector, position, criteria=group)

    members = [n for i, n in enumerate(names) if i % 5 == 4]
    assert ids(first.contacts + page.contacts[: cut + 1] + rest) == members


@pytest.mark.parametrize("refused", ["page token", "sync token"])
def test_a_position_whose_token_google_refuses_reads_its_chain_again(
    emulator: GoogleContactsEmulator, refused: str
):
    """The chain starts again (as it does for a page's cursor): everyone again, none lost."""
    names = emulator.add_people(2500)
    connector = connector_of(emulator)
    _, cursor, _ = read_chain(connector)
    for name in names:
        emulator.update(name, family_name="Changed")
    first = connector.fetch_page(ALL, cursor, now())
    page = connector.fetch_page(ALL, first.cursor, now())
    position = page.contacts[300].position
    assert position is not None
    if refused == "page token":
        emulator.invalidate_page_tokens()
    else:
        emulator.expire_sync_tokens()

    contacts, _, _ = read_chain(connector, position)

    assert ids(contacts) == names  # both: a chain from its start, in the order of change
    requests = emulator.people_requests()
    assert "syncToken" in requests[-4].query and requests[-4].status == 400
    assert ("syncToken" in requests[-3].query) == (refused == "page token")


def test_a_page_that_lost_every_person_around_its_cut_is_read_whole_again(
    emulator: GoogleContactsEmulator,
):
    names = emulator.add_people(2500)
    connector = connector_of(emulator)
    first = connector.fetch_page(ALL, "", now())
    page = connector.fetch_page(ALL, first.cursor, now())
    cut = 300
    position = page.contacts[cut].position
    assert position is not None
    around = ids(page.contacts[cut - 2 : cut + 4])
    for name in around:
        emulator.delete(name)

    rest, _, _ = read_chain(connector, position)

    assert ids(rest) == [n for n in names[1000:] if n not in around]  # counted twice, not lost


@pytest.mark.parametrize(
    ("status", "http_status"),
    [("FAILED_PRECONDITION", 400), ("INVALID_ARGUMENT", 400), ("FAILED_PRECONDITION", 410)],
)
def test_an_expired_sync_token_starts_a_full_sync_at_once(
    emulator: GoogleContactsEmulator,
    caplog: pytest.LogCaptureFixture,
    status: str,
    http_status: int,
):
    caplog.set_level(logging.INFO)
    emulator.expired_status, emulator.expired_http_status = status, http_status
    names = emulator.add_people(1500)
    connector = connector_of(emulator)
    _, cursor, _ = read_chain(connector)
    emulator.update(names[3], given_name="Changed")
    emulator.delete(names[5])
    emulator.expire_sync_tokens()
    emulator.requests.clear()

    first = connector.fetch_page(ALL, cursor, now())

    assert len(first.contacts) == 1000 and first.has_more
    assert json.loads(first.cursor)["sync_token"] == ""  # a full sync's chain now
    expired, full = emulator.people_requests()
    assert (expired.status, "syncToken" in expired.query) == (http_status, True)
    assert full.status == 200 and "syncToken" not in full.query and "pageToken" not in full.query
    assert chain_params(full) == google_contacts.CHAIN_PARAMS
    assert "sync token expired" in caplog.text
    assert any(r.levelno == logging.INFO and "full sync" in r.getMessage() for r in caplog.records)

    rest, new_cursor, _ = read_chain(connector, first.cursor)
    everyone = ids(first.contacts + rest)
    assert sorted(everyone) == sorted(emulator.people) and len(everyone) == 1499
    assert Counter(everyone).most_common(1)[0][1] == 1  # nothing doubled
    by_id = {c.external_id: c for c in first.contacts + rest}
    assert by_id[names[3]].first_name == "Changed"
    # The new chain's token works: nothing changed since.
    nothing, _, _ = read_chain(connector, new_cursor)
    assert nothing == []


def test_a_sync_token_expiring_in_the_middle_of_a_chain_restarts_it_as_a_full_sync(
    emulator: GoogleContactsEmulator,
):
    names = emulator.add_people(1500)
    connector = connector_of(emulator)
    _, cursor, _ = read_chain(connector)
    for name in names[:1100]:
        emulator.update(name, family_name="Changed")
    partial = connector.fetch_page(ALL, cursor, now())
    assert len(partial.contacts) == 1000 and partial.has_more
    emulator.expire_sync_tokens()

    contacts, _, pages = read_chain(connector, partial.cursor)

    assert len(pages) == 2
    assert sorted(ids(contacts)) == sorted(names) and len(contacts) == len(set(ids(contacts)))


def test_an_expired_token_is_recognized_by_its_message_in_a_legacy_body(
    emulator: GoogleContactsEmulator,
):
    emulator.add_people(10)
    connector = connector_of(emulator)
    _, cursor, _ = read_chain(connector)
    emulator.faults.append(
        (410, {}, {"error": {"code": 410, "message": EXPIRED_REASON, "errors": [{"reason": "x"}]}})
    )
    page = connector.fetch_page(ALL, cursor, now())
    assert len(page.contacts) == 10 and not page.has_more


def test_a_plain_invalid_argument_is_permanent_with_google_s_message(
    emulator: GoogleContactsEmulator,
):
    emulator.add_people(10)
    connector = connector_of(emulator)
    _, cursor, _ = read_chain(connector)
    bad = status_body(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
    emulator.faults.append((400, {}, bad))
    emulator.requests.clear()

    with pytest.raises(PermanentError, match="Request contains an invalid argument"):
        connector.fetch_page(ALL, cursor, now())  # a sync-token request: not a full sync

    assert len(emulator.people_requests()) == 1
    emulator.faults.append((400, {}, bad))
    with pytest.raises(PermanentError, match=r"HTTP 400\): Request contains an invalid"):
        connector.fetch_page(ALL, "", now())


def test_a_refused_page_token_restarts_its_chain_once(emulator: GoogleContactsEmulator):
    names = emulator.add_people(2500)
    connector = connector_of(emulator)
    first = connector.fetch_page(ALL, "", now())
    emulator.invalidate_page_tokens()

    again = connector.fetch_page(ALL, first.cursor, now())

    assert ids(again.contacts) == names[:1000] and again.has_more
    statuses = [r.status for r in emulator.people_requests()]
    assert statuses == [200, 400, 200]
    rest, _, _ = read_chain(connector, again.cursor)
    assert ids(again.contacts + rest) == names

    bad = status_body(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
    emulator.faults += [(400, {}, bad), (400, {}, bad)]
    emulator.requests.clear()
    with pytest.raises(PermanentError, match="invalid argument"):
        connector.fetch_page(ALL, again.cursor, now())
    assert len(emulator.people_requests()) == 2


def test_an_unreadable_cursor_starts_a_full_sync(emulator: GoogleContactsEmulator):
    names = emulator.add_people(5)
    contacts, _, _ = read_chain(connector_of(emulator), "not json")
    assert ids(contacts) == names


# -- the emulator keeps Google's rules -------------------------------------------------------


def test_the_emulator_binds_page_and_sync_tokens_to_the_chain_s_parameters(
    emulator: GoogleContactsEmulator,
):
    emulator.add_people(150)
    headers = {"Authorization": f"Bearer {emulator.access_token}"}
    url = emulator.url + PATH
    base = {"personFields": "names,emailAddresses", "requestSyncToken": "true"}

    first = httpx.get(url, params=base, headers=headers).json()
    assert len(first["connections"]) == 100 and first["totalItems"] == 150  # default pageSize
    assert "nextSyncToken" not in first
    changed = httpx.get(
        url,
        params={**base, "pageSize": "50", "pageToken": first["nextPageToken"]},
        headers=headers,
    )
    assert changed.status_code == 400
    assert changed.json()["error"]["status"] == "INVALID_ARGUMENT"
    last = httpx.get(url, params={**base, "pageToken": first["nextPageToken"]}, headers=headers)
    assert len(last.json()["connections"]) == 50 and "nextPageToken" not in last.json()
    sync_token = last.json()["nextSyncToken"]
    other_fields = {**base, "personFields": "names", "syncToken": sync_token}
    assert httpx.get(url, params=other_fields, headers=headers).status_code == 400
    same = httpx.get(url, params={**base, "syncToken": sync_token}, headers=headers)
    assert same.status_code == 200 and "connections" not in same.json()
    without = httpx.get(
        url, params={"personFields": "names", "pageSize": "1000"}, headers=headers
    ).json()
    assert len(without["connections"]) == 150 and "nextPageToken" not in without
    assert "nextSyncToken" not in without  # only when asked for
    too_big = httpx.get(url, params={**base, "pageSize": "1001"}, headers=headers)
    assert too_big.status_code == 400
    assert httpx.get(url, params={"pageSize": "10"}, headers=headers).status_code == 400


def test_the_emulator_answers_an_expired_sync_token_as_google_does(
    emulator: GoogleContactsEmulator,
):
    emulator.add_people(3)
    headers = {"Authorization": f"Bearer {emulator.access_token}"}
    params = {"personFields": "names", "requestSyncToken": "true"}
    token = httpx.get(emulator.url + PATH, params=params, headers=headers).json()["nextSyncToken"]
    emulator.expire_sync_tokens()
    response = httpx.get(
        emulator.url + PATH, params={**params, "syncToken": token}, headers=headers
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": 400,
            "message": EXPIRED_REASON,
            "status": "FAILED_PRECONDITION",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "EXPIRED_SYNC_TOKEN",
                    "domain": "people.googleapis.com",
                }
            ],
        }
    }


def test_the_emulator_enforces_a_per_minute_quota(emulator: GoogleContactsEmulator):
    emulator.add_people(3)
    emulator.quota_per_minute = 2
    headers = {"Authorization": f"Bearer {emulator.access_token}"}
    statuses = [
        httpx.get(emulator.url + PATH, params={"personFields": "names"}, headers=headers)
        for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].json()["error"]["status"] == "RESOURCE_EXHAUSTED"


# -- mapping and criteria --------------------------------------------------------------------


def test_persons_map_to_contacts_with_the_primary_items_whatever_their_order(
    emulator: GoogleContactsEmulator,
):
    names = emulator.add_people(120)
    contacts, _, _ = read_chain(connector_of(emulator))
    by_id = {c.external_id: c for c in contacts}

    for name in emulator.people:
        assert by_id[name].email == emulator.primary_email(name)
        assert not by_id[name].opted_out and not by_id[name].deleted
    not_first = [
        n
        for n, p in emulator.people.items()
        if p.get("emailAddresses") and not p["emailAddresses"][0]["metadata"].get("primary")
    ]
    assert len(not_first) > 10
    assert all(by_id[n].email == emulator.primary_email(n) for n in not_first)
    assert by_id[names[16]].email == ""  # the 17th has no email
    assert by_id[names[52]].email == "person000053 at example.com"  # passed on as it is
    first = by_id[names[0]]
    assert (first.first_name, first.last_name, first.phone) == ("First1", "Last1", "(415) 555-0001")
    third = by_id[names[2]]  # a non-primary phone comes first
    assert third.phone == "(415) 555-0003"
    fourth = by_id[names[3]]  # an old, non-primary employer comes first
    assert fourth.fields["company"] == "Company 4" and "job_title" not in fourth.fields


def test_birthday_company_and_job_title(emulator: GoogleContactsEmulator):
    names = emulator.add_people(6)
    emulator.update(
        names[0],
        birthday={"year": 1815, "month": 12, "day": 10},
        company="Analytical Engines Ltd",
        job_title="Engineer",
    )
    emulator.update(names[1], birthday={"year": 0, "month": 3, "day": 4})
    emulator.update(names[2], birthday={"month": 7, "day": 9})
    emulator.update(names[3], birthday="around new year")
    emulator.update(names[4], organizations=[], birthdays=[])
    emulator.update(names[5], company="  ", job_title="")

    by_id = {c.external_id: c for c in read_chain(connector_of(emulator))[0]}

    assert by_id[names[0]].fields == {
        "company": "Analytical Engines Ltd",
        "job_title": "Engineer",
        "birthday": "1815-12-10",
    }
    assert by_id[names[1]].fields["birthday"] == "--03-04"
    assert by_id[names[2]].fields["birthday"] == "--07-09"
    assert by_id[names[3]].fields["birthday"] == "around new year"
    assert by_id[names[4]].fields == {}
    assert "company" not in by_id[names[5]].fields and "job_title" not in by_id[names[5]].fields


def test_a_contact_group_criteria_reads_its_members_and_every_tombstone(
    emulator: GoogleContactsEmulator,
):
    names = emulator.add_people(50)
    group = GoogleContactsCriteria(contact_group=OTHER_GROUP)
    connector = connector_of(emulator)

    members, cursor, _ = read_chain(connector, criteria=group)

    expected = [n for n in names if names.index(n) % 5 == 4]  # every 5th person
    assert ids(members) == expected and len(expected) == 10
    everyone, _, _ = read_chain(connector, criteria=GoogleContactsCriteria(MY_CONTACTS))
    assert ids(everyone) == names

    emulator.update(names[0], given_name="Not a member")
    emulator.update(names[1], groups=[MY_CONTACTS, OTHER_GROUP])  # joins the group
    emulator.update(names[4], groups=[MY_CONTACTS])  # leaves it
    emulator.delete(names[2])  # never a member
    emulator.delete(names[9])  # a member
    changes, _, _ = read_chain(connector, cursor, criteria=group)

    assert sorted(ids(changes)) == sorted([names[1], names[2], names[9]])
    assert {c.external_id for c in changes if c.deleted} == {names[2], names[9]}


# -- rate limits and errors -------------------------------------------------------------------


def test_a_rate_limit_403_is_retried_and_another_403_is_not(emulator: GoogleContactsEmulator):
    emulator.add_people(3)
    emulator.min_backoff = http.BASE_DELAY / 2
    emulator.faults.append((403, {}, RATE_LIMITED_403))
    connector = connector_of(emulator)

    assert len(connector.fetch_page(ALL, "", now()).contacts) == 3
    assert [r.status for r in emulator.people_requests()] == [403, 200]
    assert emulator.early_retries == []

    scopes = status_body(
        403,
        "PERMISSION_DENIED",
        "Request had insufficient authentication scopes.",
        error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
    )
    emulator.faults.append((403, {}, scopes))
    with pytest.raises(ReauthRequired, match="insufficient scopes"):
        connector.fetch_page(ALL, "", now())
    denied = status_body(403, "PERMISSION_DENIED", "The caller does not have permission")
    emulator.faults.append((403, {}, denied))
    with pytest.raises(AuthError, match="The caller does not have permission"):
        connector.fetch_page(ALL, "", now())


def test_a_quota_used_up_for_the_minute_fails_the_sync_as_retryable(
    emulator: GoogleContactsEmulator,
):
    emulator.add_people(2500)
    emulator.quota_per_minute = 2
    emulator.min_backoff = http.BASE_DELAY / 2
    connector = connector_of(emulator)
    first = connector.fetch_page(ALL, "", now())
    second = connector.fetch_page(ALL, first.cursor, now())

    with pytest.raises(RetryableError, match="rate limiting"):
        connector.fetch_page(ALL, second.cursor, now())

    assert [r.status for r in emulator.people_requests()] == [200, 200] + [429] * http.ATTEMPTS
    assert emulator.early_retries == []


# -- OAuth ------------------------------------------------------------------------------------


def calls(emulator: GoogleContactsEmulator) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in emulator.requests]


def test_a_401_refreshes_the_token_and_the_page_carries_the_new_credentials(
    emulator: GoogleContactsEmulator,
):
    emulator.add_people(2500)
    old = Credentials(emulator.access_token, emulator.refresh_token)
    emulator.expire_access_tokens()
    connector = connector_of(emulator, old)

    page = connector.fetch_page(ALL, "", now())

    assert len(page.contacts) == 1000
    assert calls(emulator) == [(PATH, 401), (TOKEN_PATH, 200), (PATH, 200)]
    assert emulator.refreshes == 1
    new = page.credentials
    assert new is not None and new.access_token != old.access_token
    assert new.refresh_token == old.refresh_token
    expires_at = datetime.fromisoformat(new.expires_at.replace("Z", "+00:00"))
    assert abs(expires_at - (now() + timedelta(hours=1))) < timedelta(minutes=1)
    assert connector.credentials == new
    # The next pages use the new token, and carry no credentials.
    rest, _, pages = read_chain(connector, page.cursor)
    assert all(p.credentials is None for p in pages) and len(rest) == 1500
    assert emulator.refreshes == 1 and calls(emulator)[3:] == [(PATH, 200), (PATH, 200)]


def test_a_refresh_token_google_replaces_is_handed_over(emulator: GoogleContactsEmulator):
    emulator.add_people(3)
    emulator.rotate_refresh_tokens = True
    old_refresh = emulator.refresh_token
    emulator.expire_access_tokens()
    page = connector_of(emulator).fetch_page(ALL, "", now())
    assert page.credentials is not None
    assert page.credentials.refresh_token not in ("", old_refresh)


@pytest.mark.parametrize("seconds", [-600, 30])
def test_a_token_about_to_expire_is_refreshed_before_the_request(
    emulator: GoogleContactsEmulator, seconds: int
):
    emulator.add_people(3)
    expires_at = google_contacts.iso_utc(now() + timedelta(seconds=seconds))
    credentials = Credentials(emulator.access_token, emulator.refresh_token, expires_at)

    page = connector_of(emulator, credentials).fetch_page(ALL, "", now())

    assert calls(emulator) == [(TOKEN_PATH, 200), (PATH, 200)]
    assert page.credentials is not None and page.credentials.expires_at > expires_at


@pytest.mark.parametrize("expires_at", ["", "not a time", "in ten minutes"])
def test_a_token_not_known_to_expire_soon_is_used_as_it_is(
    emulator: GoogleContactsEmulator, expires_at: str
):
    emulator.add_people(3)
    if expires_at == "in ten minutes":
        expires_at = (now() + timedelta(minutes=10)).isoformat()
    credentials = Credentials(emulator.access_token, emulator.refresh_token, expires_at)
    page = connector_of(emulator, credentials).fetch_page(ALL, "", now())
    assert calls(emulator) == [(PATH, 200)] and page.credentials is None


def test_a_second_401_after_a_refresh_is_an_auth_error(emulator: GoogleContactsEmulator):
    emulator.add_people(3)
    rejected = unauthenticated("ACCESS_TOKEN_EXPIRED")
    emulator.faults += [(401, {}, rejected), (401, {}, rejected)]
    with pytest.raises(AuthError) as raised:
        connector_of(emulator).fetch_page(ALL, "", now())
    assert str(raised.value) == "Google rejected the credentials: reconnect the account"
    assert not isinstance(raised.value, ReauthRequired)
    assert calls(emulator) == [(PATH, 401), (TOKEN_PATH, 200), (PATH, 401)]


def test_a_revoked_refresh_token_needs_the_account_reconnected(
    emulator: GoogleContactsEmulator,
):
    emulator.expire_access_tokens()
    emulator.revoke_refresh_token()
    with pytest.raises(ReauthRequired) as raised:
        connector_of(emulator).fetch_page(ALL, "", now())
    assert "invalid_grant" in str(raised.value)
    assert "reconnect the Google account" in str(raised.value)
    assert calls(emulator) == [(PATH, 401), (TOKEN_PATH, 400)]


def test_without_an_oauth_client_the_error_names_the_settings(emulator: GoogleContactsEmulator):
    with pytest.raises(PermanentError, match="AUTOIMPORT_GOOGLE_CLIENT_ID") as raised:
        connector_of(emulator, client_id="").fetch_page(ALL, "", now())
    assert "AUTOIMPORT_GOOGLE_CLIENT_SECRET" in str(raised.value)
    assert emulator.requests == []


@pytest.mark.parametrize("setting", ["client_id", "client_secret"])
def test_a_wrong_oauth_client_is_permanent_and_names_the_settings(
    emulator: GoogleContactsEmulator, setting: str
):
    emulator.expire_access_tokens()
    wrong = "wrong-value-that-must-not-leak-42"
    with pytest.raises(PermanentError) as raised:
        connector_of(emulator, **{setting: wrong}).fetch_page(ALL, "", now())
    text = str(raised.value)
    assert "invalid_client" in text and "AUTOIMPORT_GOOGLE_CLIENT_ID" in text and wrong not in text
    assert "AUTOIMPORT_GOOGLE_CLIENT_SECRET" in text
    assert calls(emulator) == [(PATH, 401), (TOKEN_PATH, 401)]


def test_no_credential_ever_reaches_a_log_line_or_an_error(
    emulator: GoogleContactsEmulator, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    emulator.add_people(3)
    errors: list[Exception] = []

    def attempt(connector: GoogleContactsConnector) -> None:
        try:
            connector.fetch_page(ALL, "", now())
        except Exception as e:
            errors.append(e)

    emulator.expire_access_tokens()
    attempt(connector_of(emulator))  # refreshed
    emulator.expire_access_tokens()
    echo = {"error": "invalid_request", "error_description": f"bad {emulator.refresh_token}"}
    emulator.fail(Fault(400, {}, echo, path=TOKEN_PATH))
    attempt(connector_of(emulator))  # Google echoes the refresh token: scrubbed
    leaky = status_body(400, "INVALID_ARGUMENT", f"token {emulator.access_token} is odd")
    emulator.faults.append((400, {}, leaky))
    attempt(connector_of(emulator))
    attempt(connector_of(emulator, client_secret="some-other-secret-value-77"))  # invalid_client
    emulator.revoke_refresh_token()
    attempt(connector_of(emulator))  # invalid_grant

    assert [type(e) for e in errors] == [
        PermanentError,
        PermanentError,
        PermanentError,
        ReauthRequired,
    ]
    assert "<hidden>" in str(errors[0]) and "<hidden>" in str(errors[1])
    texts = caplog.text + "".join(f"{e}{e!r}" for e in errors)
    for secret in emulator.issued_secrets() | {"some-other-secret-value-77"}:
        assert secret not in texts


# -- end to end: a real server reading the emulator --------------------------------------------


@pytest.mark.parametrize("store", STORES)
def test_a_google_import_keeps_refreshed_credentials_and_survives_an_expired_sync_token(
    store: str, tmp_path: Path
):
    """Google's pitfalls through a real server (the capped windows are the contract's):
    birthdays as fields, a refreshed access token kept for the next syncs, an expired sync
    token answered by a full sync that adds and doubles nothing."""
    with (
        GoogleContactsEmulator() as emulator,
        store_env(store, tmp_path) as env,
        ServerProcess({**env, **settings_of(emulator)}) as server,
        server.client(server.admin_token) as admin,
    ):
        names = emulator.add_people(40, without_email_every=0, invalid_email_every=0)
        name = import_in(admin, emulator, 100_000).name
        account_id = account_of(name)

        def sync() -> pb.SyncReport:
            return admin.imports.TriggerSync(pb.TriggerSyncRequest(name=name), timeout=120)

        assert sync().added == 40
        contacts = all_contacts(admin, account_id)
        first = next(c for c in contacts if c.email == emulator.primary_email(names[0]))
        assert (first.first_name, first.last_name) == ("First1", "Last1")
        assert dict(first.fields) == {"%GOOGLE_CONTACTS_BIRTHDAY%": "--02-02"}

        # The access token expired: refreshed, and the new credentials are kept.
        emulator.expire_access_tokens()
        emulator.update(names[11], family_name="Changed")
        report = sync()
        assert report.outcome == pb.SyncReport.COMPLETED, report
        assert (report.fetched, report.updated) == (1, 1)
        assert emulator.refreshes == 1
        history = list(admin.imports.GetImportHistory(pb.GetImportHistoryRequest(name=name)))
        assert "CredentialsRotated" in [e.type for e in history]
        assert not any(secret in str(history) for secret in emulator.issued_secrets())
        assert sync().outcome == pb.SyncReport.COMPLETED
        assert emulator.refreshes == 1  # the next sync starts with the refreshed token

        # The sync token expired: a full sync, nothing added or doubled.
        emulator.expire_sync_tokens()
        report = sync()
        assert report.outcome == pb.SyncReport.COMPLETED, report
        assert (report.fetched, report.added, report.updated) == (40, 0, 0)
        assert len(all_contacts(admin, account_id)) == 40

        assert emulator.early_retries == []
        failed = [r for r in emulator.requests if r.status != 200]
        assert [(r.path, r.status) for r in failed] == [(PATH, 401), (PATH, 400)]
        assert "syncToken" in failed[1].query  # only the expired token: params never differed
        server.terminate()
        log = "".join(server.output)
        for secret in emulator.issued_secrets():
            assert secret not in log


@pytest.mark.parametrize("store", STORES)
def test_a_revoked_google_grant_waits_for_new_credentials(store: str, tmp_path: Path):
    with (
        GoogleContactsEmulator() as emulator,
        store_env(store, tmp_path) as env,
        ServerProcess({**env, **settings_of(emulator)}) as server,
        server.client(server.admin_token) as admin,
    ):
        emulator.add_people(30, without_email_every=0, invalid_email_every=0)
        name = import_in(admin, emulator, 1000).name
        emulator.expire_access_tokens()
        emulator.revoke_refresh_token()

        report = admin.imports.TriggerSync(pb.TriggerSyncRequest(name=name), timeout=60)

        assert report.outcome == pb.SyncReport.FAILED
        assert "invalid_grant" in report.error and "reconnect" in report.error
        current = admin.imports.GetImport(pb.GetImportRequest(name=name))
        assert current.state == pb.AutoImport.NEEDS_REAUTH
        assert "reconnect the Google account" in current.state_reason
        with pytest.raises(grpc.RpcError) as refused:
            admin.imports.TriggerSync(pb.TriggerSyncRequest(name=name), timeout=60)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        access_token, refresh_token = emulator.grant()  # the person reconnects the account
        updated = admin.imports.UpdateImport(
            pb.UpdateImportRequest(
                auto_import=pb.AutoImport(
                    name=name,
                    etag=current.etag,
                    credentials=pb.Credentials(
                        access_token=access_token, refresh_token=refresh_token
                    ),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["credentials"]),
            )
        )
        assert updated.state == pb.AutoImport.ACTIVE and updated.state_reason == ""

        report = admin.imports.TriggerSync(pb.TriggerSyncRequest(name=name), timeout=60)
        assert report.outcome == pb.SyncReport.COMPLETED, report
        assert report.added == 30
        assert len(all_contacts(admin, account_of(name))) == 30
        server.terminate()
        log = "".join(server.output)
        for secret in emulator.issued_secrets():
            assert secret not in log
        assert emulator.refresh_token not in str(report)


# -- the connection check ----------------------------------------------------------------------


def checked(
    emulator: GoogleContactsEmulator,
    account: str = "owner@example.com",
    criteria: GoogleContactsCriteria | None = None,
    credentials: Credentials | None = None,
) -> dict[str, Finding]:
    connector = connector_of(emulator, credentials)
    try:
        findings = connector.check_connection(criteria or GoogleContactsCriteria(), account)
    finally:
        connector.close()
    assert [f.check for f in findings] == list(CONNECTION_CHECKS)
    return {f.check: f for f in findings}


def test_the_check_fails_the_scopes_for_a_contact_group_the_account_does_not_have(
    emulator: GoogleContactsEmulator,
):
    missing = "contactGroups/0a0b0c0d0e0f"

    findings = checked(emulator, criteria=GoogleContactsCriteria(contact_group=missing))

    assert not findings["scopes"].ok and missing in findings["scopes"].detail
    assert findings["credentials"].ok and findings["external account"].ok
    assert [r.status for r in emulator.recorded(f"/v1/{missing}")] == [404]


def test_the_check_names_the_contact_group_the_criteria_select(emulator: GoogleContactsEmulator):
    findings = checked(emulator, criteria=GoogleContactsCriteria(contact_group=OTHER_GROUP))

    assert findings["scopes"].ok and "Customers" in findings["scopes"].detail


def test_the_check_names_the_scope_a_grant_without_contacts_lacks(
    emulator: GoogleContactsEmulator,
):
    emulator.limit_scopes(frozenset({EMAIL_SCOPE}))

    findings = checked(emulator)

    assert findings["external account"].ok  # people/me answers to the email scope alone
    assert not findings["scopes"].ok
    assert google_contacts.CONTACTS_SCOPE in findings["scopes"].detail
    assert [r.status for r in emulator.people_requests()] == [403]


def test_the_check_renews_an_expired_access_token(emulator: GoogleContactsEmulator):
    emulator.expire_access_tokens()

    findings = checked(emulator)

    assert all(f.ok for f in findings.values()), findings
    assert "renewed" in findings["credentials"].detail
    assert emulator.refreshes == 1


def test_the_check_says_a_revoked_grant_needs_the_account_reconnected(
    emulator: GoogleContactsEmulator,
):
    emulator.expire_access_tokens()
    emulator.revoke_refresh_token()

    findings = checked(emulator)

    assert findings["credentials"] == Finding("credentials", False, google_contacts.REVOKED)
    assert findings["quota"].detail == NOT_TRIED


def test_the_check_compares_gmail_accounts_by_their_identity(emulator: GoogleContactsEmulator):
    emulator.owner_email = "jane.doe@gmail.com"

    assert checked(emulator, "janedoe+imports@googlemail.com")["external account"].ok
    other = checked(emulator, "jane.doe@example.com")["external account"]
    assert not other.ok and "jane.doe@gmail.com" in other.detail


def test_the_check_cannot_confirm_the_account_without_an_email_scope(
    emulator: GoogleContactsEmulator,
):
    emulator.limit_scopes(frozenset({google_contacts.CONTACTS_SCOPE}))

    account = checked(emulator, "whoever@example.com")["external account"]

    assert account.ok and "make sure" in account.detail and "whoever@example.com" in account.detail


def test_the_check_says_google_reports_no_quota_left_but_a_429(emulator: GoogleContactsEmulator):
    assert checked(emulator)["quota"].ok
    emulator.throttle(http.ATTEMPTS)  # every try of the connections read

    findings = checked(emulator)

    assert findings["credentials"].ok
    assert not findings["quota"].ok and "429" in findings["quota"].detail
    assert google_contacts.QUOTA_PAGE in findings["quota"].detail


def test_the_check_refuses_without_the_server_s_oauth_client(emulator: GoogleContactsEmulator):
    connector = connector_of(emulator, client_id="", client_secret="")

    with pytest.raises(PermanentError, match="OAuth client"):
        connector.check_connection(GoogleContactsCriteria(), "owner@example.com")

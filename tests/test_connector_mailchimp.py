"""The Mailchimp connector against the Mailchimp emulator (real HTTP on loopback): Mailchimp's
own pitfalls. The offset read that skips a member changed mid-read, ties larger than a page,
statuses, merge fields and tags, the data centre, OAuth metadata, 10 connections per user."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import http, mailchimp
from connectors.base import Finding, PermanentError, ReauthRequired, RetryableError
from connectors.mailchimp import MailchimpConnector, MailchimpCriteria
from domain.errors import ValidationError, Violations
from domain.sync import ExternalContact
from emulators.mailchimp import MailchimpEmulator, problem, subscriber_hash
from emulators.server import Fault
from tests.connectors.contract import findings_of

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


@pytest.fixture(scope="module")
def served() -> Iterator[MailchimpEmulator]:
    with MailchimpEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(served: MailchimpEmulator) -> MailchimpEmulator:
    """The module's emulator, emptied (one server: hypothesis runs many examples)."""
    served.members.clear()
    served.requests.clear()
    served.early_retries.clear()
    served.faults.clear()
    served.segments.clear()
    served.inclusive_bounds = False
    served.delay = 0.0
    served.most_in_flight = 0
    return served


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "BASE_DELAY", 0.01)


def connector_of(
    emulator: MailchimpEmulator, secret: str = "", external_account: str | None = None
) -> MailchimpConnector:
    return MailchimpConnector(
        secret or emulator.api_key,
        base_url=emulator.url,
        external_account=emulator.account_id if external_account is None else external_account,
    )


def criteria_of(emulator: MailchimpEmulator, **kwargs: str) -> MailchimpCriteria:
    return MailchimpCriteria(audience_id=emulator.list_id, **kwargs)


def bound() -> datetime:
    return datetime.now(UTC) - MailchimpConnector.lag


def read_chain(
    connector: MailchimpConnector,
    criteria: MailchimpCriteria,
    cursor: str = "",
    until: datetime | None = None,
    between_pages: list[object] | None = None,
) -> tuple[list[ExternalContact], str]:
    contacts: list[ExternalContact] = []
    while True:
        page = connector.fetch_page(criteria, cursor, until or bound())
        contacts += page.contacts
        cursor = page.cursor
        if not page.has_more:
            return contacts, cursor


def ids_of(contacts: list[ExternalContact]) -> list[str]:
    return [c.external_id for c in contacts]


def small_pages(monkeypatch: pytest.MonkeyPatch, page: int, tie_limit: int, anchor: int) -> None:
    monkeypatch.setattr(mailchimp, "PAGE_SIZE", page)
    monkeypatch.setattr(mailchimp, "TIE_LIMIT", tie_limit)
    monkeypatch.setattr(mailchimp, "ANCHOR", anchor)


# -- the offset pitfall ----------------------------------------------------------------------


def offset_read(emulator: MailchimpEmulator, count: int, change_after_first: str) -> list[str]:
    """What Mailchimp's own paging gives: offset += count, sorted by last_changed."""
    headers = {"Authorization": "Basic " + mailchimp._basic(emulator.api_key)}
    read, offset = [], 0
    while True:
        page = httpx.get(
            f"{emulator.url}/3.0/lists/{emulator.list_id}/members",
            params={
                "count": count,
                "offset": offset,
                "sort_field": "last_changed",
                "sort_dir": "ASC",
                "before_last_changed": bound().isoformat(),
            },
            headers=headers,
        ).json()["members"]
        read += [m["id"] for m in page]
        if offset == 0:
            emulator.change(change_after_first)  # read already; now at the end, past the bound
        offset += count
        if len(page) < count:
            return read


def test_an_offset_read_skips_a_member_changed_mid_read_and_the_keyset_does_not(
    emulator: MailchimpEmulator, monkeypatch: pytest.MonkeyPatch
):
    ids = emulator.add_members(30, changed_at=BASE)
    by_offset = offset_read(emulator, 10, change_after_first=ids[3])
    skipped = set(ids) - set(by_offset)
    assert skipped == {ids[10]}  # moved up onto offset 9, already read

    emulator.members.clear()
    ids = emulator.add_members(30, changed_at=BASE)
    small_pages(monkeypatch, page=10, tie_limit=5, anchor=3)
    connector, criteria = connector_of(emulator), criteria_of(emulator)
    until = bound()
    first = connector.fetch_page(criteria, "", until)
    emulator.change(ids[3])
    rest, cursor = read_chain(connector, criteria, first.cursor, until)

    assert Counter(ids_of(first.contacts + rest)) == Counter(ids)
    again, _ = read_chain(connector, criteria, cursor, datetime.now(UTC) + timedelta(minutes=1))
    assert ids_of(again) == [ids[3]]  # its change comes in the next chain


members_and_changes = st.tuples(
    st.lists(st.integers(1, 12), min_size=1, max_size=8),  # tie group sizes, one second apart
    st.lists(st.lists(st.integers(0, 200), max_size=2), max_size=12),  # changes between pages
    st.booleans(),  # whether Mailchimp's since/before bounds are inclusive
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(members_and_changes)
def test_no_member_is_lost_however_members_change_during_a_read(
    emulator: MailchimpEmulator, monkeypatch: pytest.MonkeyPatch, example: tuple
):
    groups, changes, inclusive = example
    emulator.members.clear()
    emulator.inclusive_bounds = inclusive
    small_pages(monkeypatch, page=4, tie_limit=3, anchor=2)
    ids = []
    for n, size in enumerate(groups):
        ids += emulator.add_members(size, ties=size, changed_at=BASE + timedelta(seconds=n))
    connector, criteria = connector_of(emulator), criteria_of(emulator)
    until = BASE + timedelta(hours=1)
    cursor, read, changed = "", [], set()
    for page_number in range(10_000):
        page = connector.fetch_page(criteria, cursor, until)
        read += ids_of(page.contacts)
        cursor = page.cursor
        if not page.has_more:
            break
        for pick in changes[page_number] if page_number < len(changes) else []:
            member = ids[pick % len(ids)]
            emulator.change(member, at=until + timedelta(minutes=1))  # past the bound
            changed.add(member)

    assert set(ids) - changed <= set(read)  # every member unchanged during the read came
    if not changed:
        assert read == ids  # each once, in last_changed order
    later, _ = read_chain(connector, criteria, cursor, until + timedelta(minutes=2))
    assert changed <= set(ids_of(later)) and set(ids) <= set(read) | set(ids_of(later))


def test_a_tie_larger_than_a_page_comes_once_even_when_members_in_it_change(
    emulator: MailchimpEmulator,
):
    ids = emulator.add_members(2500, ties=2500, changed_at=BASE)  # a bulk import: one second
    ids += emulator.add_members(40, ties=4, changed_at=BASE + timedelta(minutes=5))
    connector, criteria = connector_of(emulator), criteria_of(emulator)
    until = bound()
    first = connector.fetch_page(criteria, "", until)
    assert len(first.contacts) == 1000
    for member in (ids[5], ids[990], ids[1500]):  # read, read, unread
        emulator.change(member)
    rest, cursor = read_chain(connector, criteria, first.cursor, until)

    chain = ids_of(first.contacts + rest)
    assert Counter(chain) == Counter(i for i in ids if i != ids[1500])
    members_requests = [r for r in emulator.requests if r.path.endswith("/members")]
    assert all(r.params["count"] == ["1000"] for r in members_requests)
    assert all(r.params["sort_field"] == ["last_changed"] for r in members_requests)
    assert any(int(r.query["offset"]) > 0 for r in members_requests)  # swept by offset
    later, _ = read_chain(connector, criteria, cursor, datetime.now(UTC) + timedelta(minutes=1))
    assert sorted(ids_of(later)) == sorted([ids[5], ids[990], ids[1500]])


@pytest.mark.parametrize("inclusive", [False, True], ids=["exclusive", "inclusive"])
def test_a_sync_resumes_from_any_contact_position_and_reads_each_member_once(
    emulator: MailchimpEmulator, monkeypatch: pytest.MonkeyPatch, inclusive: bool
):
    emulator.inclusive_bounds = inclusive
    small_pages(monkeypatch, page=10, tie_limit=4, anchor=3)
    ids = []
    for n, size in enumerate([3, 7, 25, 1, 12, 2]):
        ids += emulator.add_members(size, ties=size, changed_at=BASE + timedelta(seconds=n))
    connector, criteria = connector_of(emulator), criteria_of(emulator)
    everything, _ = read_chain(connector, criteria)
    assert ids_of(everything) == ids  # in last_changed order, ties in Mailchimp's order
    for cut in (0, 2, 3, 9, 10, 17, 29, 35, 46):
        rest, _ = read_chain(connector, criteria, everything[cut].position or "")
        assert ids_of(rest) == ids[cut + 1 :], cut
    page = connector.fetch_page(criteria, everything[17].position or "", bound())
    assert ids_of(
        connector.fetch_page(criteria, everything[17].position or "", bound()).contacts
    ) == ids_of(page.contacts)


# -- what a member becomes -------------------------------------------------------------------


def test_statuses_merge_fields_and_tags(emulator: MailchimpEmulator):
    ids = emulator.add_members(60, changed_at=BASE)
    contacts, _ = read_chain(connector_of(emulator), criteria_of(emulator))
    by_id = {c.external_id: c for c in contacts}
    assert set(by_id) == set(ids)
    for member_id, contact in by_id.items():
        member = emulator.members[member_id]
        status = member["status"]
        assert contact.external_id == subscriber_hash(contact.email)
        assert contact.opted_out is (status in ("unsubscribed", "cleaned"))
        assert contact.deleted is (status == "archived")
        assert bool(contact.skip_reason) is (status in ("pending", "transactional"))
        assert contact.first_name == member["merge_fields"]["FNAME"]
        assert contact.phone == member["merge_fields"]["PHONE"]
        assert contact.fields.get("tags", "") == ", ".join(t["name"] for t in member["tags"])
    assert {c.skip_reason for c in contacts} >= {
        mailchimp.SKIP_REASONS["pending"],
        mailchimp.SKIP_REASONS["transactional"],
    }
    assert by_id[ids[0]].fields["merge:ADDRESS"] == "0 Main St, Atlanta, GA, 30318, US"
    assert by_id[ids[4]].fields["merge:BIRTHDAY"] == "05/05"
    assert "merge:PHONE" not in by_id[ids[3]].fields  # a standard field, not a custom one

    page = connector_of(emulator).fetch_page(criteria_of(emulator), "", bound())
    declared = {d.key: (d.title, d.personalization_tag) for d in page.declared_fields}
    assert declared == {
        "merge:ADDRESS": ("Mailchimp Address", "%MAILCHIMP_ADDRESS%"),
        "merge:BIRTHDAY": ("Mailchimp Birthday", "%MAILCHIMP_BIRTHDAY%"),
        "tags": ("Mailchimp Tags", "%MAILCHIMP_TAGS%"),
    }
    members = next(r for r in emulator.requests if r.path.endswith("/members"))
    assert members.params["fields"] == [
        "total_items,members.id,members.email_address,members.status,members.merge_fields,"
        "members.tags,members.last_changed"
    ]


def test_criteria_status_tag_and_segment(
    emulator: MailchimpEmulator, monkeypatch: pytest.MonkeyPatch
):
    ids = emulator.add_members(120, changed_at=BASE)
    connector = connector_of(emulator)
    pending, _ = read_chain(connector, criteria_of(emulator, member_status="pending"))
    assert ids_of(pending) == [i for i in ids if emulator.members[i]["status"] == "pending"]
    assert pending and emulator.requests[-1].query["status"] == "pending"
    vip, _ = read_chain(connector, criteria_of(emulator, member_tag="vip"))
    assert ids_of(vip) == [
        i for i in ids if any(t["name"] == "VIP" for t in emulator.members[i]["tags"])
    ]

    small_pages(monkeypatch, page=7, tie_limit=4, anchor=3)
    emulator.segments["4242"] = ids[::2]
    segment = criteria_of(emulator, segment_id="4242")
    first = connector.fetch_page(segment, "", bound())
    emulator.segments["4242"].remove(ids[4])  # read already: the rest shift back one place
    rest, cursor = read_chain(connector, segment, first.cursor)
    in_segment = [i for i in ids[::2] if emulator.members[i]["status"] != "archived"]
    assert set(ids_of(first.contacts + rest)) == set(in_segment)
    again, _ = read_chain(connector, segment, cursor)  # every chain reads the whole segment
    assert set(ids_of(again)) == set(in_segment) - {ids[4]}


def violations_of(criteria: MailchimpCriteria) -> list[str]:
    violations = Violations()
    criteria.validate(violations, "criteria.mailchimp")
    try:
        violations.raise_if_any()
    except ValidationError as e:
        return [v.field for v in e.violations]
    return []


def test_criteria_validation():
    assert violations_of(MailchimpCriteria(audience_id="a1b2c3d4e5")) == []
    assert violations_of(MailchimpCriteria()) == ["criteria.mailchimp.audience_id"]
    assert violations_of(
        MailchimpCriteria(audience_id="a1", member_status="subscribed", member_tag="VIP")
    ) == ["criteria.mailchimp.member_tag"]
    assert violations_of(MailchimpCriteria(audience_id="a1", member_status="bounced")) == [
        "criteria.mailchimp.member_status"
    ]
    assert violations_of(MailchimpCriteria(audience_id="a1", segment_id="abc")) == [
        "criteria.mailchimp.segment_id"
    ]
    for status in mailchimp.STATUSES:
        assert violations_of(MailchimpCriteria(audience_id="a1", member_status=status)) == []


def test_external_account_is_the_account_id():
    violations = Violations()
    source = mailchimp.SOURCE
    assert source.normalize_external_account(" 8D3A3DB4d9 ", violations, "x") == "8d3a3db4d9"
    assert source.external_account_identity("8D3A3DB4d9") == "8d3a3db4d9"
    bad = Violations()
    source.normalize_external_account("not an id!", bad, "x")
    assert bad


# -- where, and with what ------------------------------------------------------------------


def test_the_data_centre_is_the_key_suffix():
    assert mailchimp.data_centre_of("0123456789abcdef0123456789abcdef-us19") == "us19"
    assert mailchimp.data_centre_of("0123456789abcdef0123456789abcdef") is None
    connector = MailchimpConnector("0123456789abcdef0123456789abcdef-us19")
    assert str(connector._http().base_url) == "https://us19.api.mailchimp.com"


def test_an_oauth_token_finds_its_endpoint_in_the_metadata_and_reads_with_bearer(
    emulator: MailchimpEmulator,
):
    ids = emulator.add_members(5, changed_at=BASE)
    connector = MailchimpConnector(
        emulator.oauth_token, oauth_url=emulator.url, external_account=emulator.account_id
    )
    contacts, _ = read_chain(connector, criteria_of(emulator))
    assert ids_of(contacts) == ids
    metadata, *api = emulator.requests
    assert metadata.path == "/oauth2/metadata"
    assert metadata.headers["Authorization"] == f"OAuth {emulator.oauth_token}"
    assert {r.headers["Authorization"] for r in api} == {f"Bearer {emulator.oauth_token}"}
    assert emulator.last_headers is not None
    assert emulator.last_headers["User-Agent"].startswith("contact-autoimport/")


def test_at_most_ten_requests_in_flight_per_account(
    emulator: MailchimpEmulator, monkeypatch: pytest.MonkeyPatch
):
    emulator.add_members(5, changed_at=BASE)
    emulator.delay = 0.2

    def run(accounts: list[str]) -> list[str]:
        """How each concurrent read ended: "read", or the RetryableError's words."""
        ended: list[str] = []

        def read_with(account: str) -> None:
            try:
                read_chain(connector_of(emulator, external_account=account), criteria_of(emulator))
                ended.append("read")
            except RetryableError as e:
                ended.append(str(e))

        threads = [threading.Thread(target=read_with, args=(a,)) for a in accounts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return ended

    assert run([emulator.account_id] * 14) == ["read"] * 14
    assert emulator.most_in_flight <= 10 and {r.status for r in emulator.requests} == {200}

    # Without the limiter shared by the user's connectors, Mailchimp answers 429.
    emulator.requests.clear()
    emulator.most_in_flight = 0
    monkeypatch.setattr(mailchimp, "_limiter_of", lambda user: threading.BoundedSemaphore(10))
    ended = run([emulator.account_id] * 14)
    assert emulator.most_in_flight > 10 and 429 in {r.status for r in emulator.requests}
    # A read retries its 429s, and may still run out of tries: never another failure.
    assert set(ended) <= {
        "read",
        "Mailchimp is rate limiting this account: the next sync tries again",
    }


def test_429_and_5xx_are_retried_401_needs_a_person_404_names_the_audience(
    emulator: MailchimpEmulator,
):
    ids = emulator.add_members(3, changed_at=BASE)
    emulator.fail(
        Fault(429, {}, problem(429, "Too Many Requests", "You have exceeded the limit.")),
        Fault(503, {}, problem(503, "Service Unavailable", "Try again.")),
    )
    contacts, _ = read_chain(connector_of(emulator), criteria_of(emulator))
    assert ids_of(contacts) == ids
    reads = [r.status for r in emulator.requests if r.path.endswith("/members")]
    assert reads == [429, 503, 200]

    with pytest.raises(ReauthRequired, match="API Key Invalid"):
        read_chain(connector_of(emulator, secret="f" * 32 + "-us19"), criteria_of(emulator))
    with pytest.raises(PermanentError, match="no audience"):
        read_chain(connector_of(emulator), MailchimpCriteria(audience_id="nosuchlist"))
    with pytest.raises(PermanentError, match="belong to account"):
        read_chain(connector_of(emulator, external_account="someoneelse"), criteria_of(emulator))


def test_the_emulator_answers_as_mailchimp_does(emulator: MailchimpEmulator):
    ids = emulator.add_members(30, ties=10, changed_at=BASE)
    headers = {"Authorization": "Basic " + mailchimp._basic(emulator.api_key)}
    url = f"{emulator.url}/3.0/lists/{emulator.list_id}/members"

    def get(**params: str | int) -> httpx.Response:
        return httpx.get(url, params=params, headers=headers)

    assert get(count=1001).status_code == 400
    default = get().json()
    assert len(default["members"]) == 10 and default["total_items"] == 30
    trimmed = get(fields="members.id,total_items", count=2).json()
    assert trimmed == {"members": [{"id": ids[0]}, {"id": ids[1]}], "total_items": 30}
    since = get(since_last_changed=(BASE + timedelta(seconds=1)).isoformat(), count=100)
    assert [m["id"] for m in since.json()["members"]] == ids[20:]  # "after": exclusive
    newest = get(sort_field="last_changed", sort_dir="DESC", count=1).json()["members"][0]
    assert newest["last_changed"] == (BASE + timedelta(seconds=2)).isoformat()
    missing = httpx.get(f"{emulator.url}/3.0/lists/nope/members", headers=headers)
    assert missing.status_code == 404 and missing.json()["title"] == "Resource Not Found"
    refused = httpx.get(url, headers={"Authorization": "Basic " + mailchimp._basic("x-us1")})
    assert refused.status_code == 401
    assert set(refused.json()) == {"type", "title", "status", "detail", "instance"}
    root = httpx.get(f"{emulator.url}/3.0/", headers=headers).json()
    assert root["account_id"] == emulator.account_id


# -- the connection check ----------------------------------------------------------------------


def test_the_check_names_the_audience_and_segment_it_found_or_missed(emulator: MailchimpEmulator):
    emulator.segments["77"] = []

    def check(criteria: MailchimpCriteria) -> dict[str, Finding]:
        return findings_of(connector_of(emulator), criteria, emulator.account_id)

    found = check(criteria_of(emulator, segment_id="77"))
    missing = check(MailchimpCriteria(audience_id="nosuchlist"))
    no_segment = check(criteria_of(emulator, segment_id="78"))

    assert all(f.ok for f in found.values()), found
    assert "audience 'Emulated Audience' and segment 'Segment 77'" in found["scopes"].detail
    assert not missing["scopes"].ok and "no audience 'nosuchlist'" in missing["scopes"].detail
    assert not no_segment["scopes"].ok and "no segment '78'" in no_segment["scopes"].detail
    assert "10 simultaneous connections" in found["quota"].detail

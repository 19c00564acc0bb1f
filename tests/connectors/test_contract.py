"""The contract every connector and its emulator pass: one suite, run for every registered
service through its harness (tests/connectors/harness_<service id>.py); each connector's own
pitfalls are tested in tests/test_connector_<service>.py."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import connectors
from autoimport.v1 import contacts_pb2 as cpb
from autoimport.v1 import imports_pb2 as pb
from connectors import http
from connectors.base import CONNECTION_CHECKS, NOT_TRIED, AuthError, Finding, RetryableError
from domain.sync import ContactPage, ExternalContact
from emulators.server import DROP, Fault
from tests.conftest import STORES
from tests.connectors.contract import (
    Harness,
    by_check,
    harness_of,
    ids_of,
    later,
    quick_backoff,  # noqa: F401  (an autouse fixture)
    read_chain,
    registered_services,
)
from tests.support import (
    ServerProcess,
    account_of,
    all_contacts,
    pass_counts,
    store_env,
    wait_for_next_window,
)

SERVICES = registered_services()


@pytest.fixture(params=SERVICES, ids=str)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with harness_of(request.param)() as harness:
        yield harness


def bound(harness: Harness) -> datetime:
    """A sync's bound, as the engine sets it: its start minus the connector's lag."""
    return datetime.now(UTC) - harness.connector().lag


def read(
    harness: Harness, cursor: str = "", until: datetime | None = None
) -> tuple[list[ExternalContact], str, list[ContactPage]]:
    """A chain read by a new connector (as each sync has), to `until` (default: later)."""
    connector = harness.connector()
    try:
        return read_chain(connector, cursor, criteria=harness.criteria, until=until or later)
    finally:
        connector.close()


def statuses(harness: Harness) -> list[int]:
    """Of the answers to the requests faults apply to (e.g. not Google's token requests)."""
    emulator = harness.emulator
    return [r.status for r in emulator.recorded() if emulator.faultable(r)]


def test_every_registered_service_has_a_harness():
    for service in registered_services():
        assert harness_of(service).service == service


def test_a_service_without_a_harness_fails_the_contract():
    with pytest.raises(AssertionError, match="without a contract harness"):
        harness_of("no_such_service")


# -- reading ------------------------------------------------------------------------------------


def test_a_full_read_reads_everyone_once_over_several_pages(harness: Harness):
    ids = harness.seed(harness.page_size * 2 + harness.page_size // 2)

    contacts, _, pages = read(harness)

    assert Counter(ids_of(contacts)) == Counter(ids)
    assert len(pages) >= 3 and not pages[-1].has_more
    assert all(p.has_more for p in pages[:-1])
    assert {c.email for c in contacts} == {harness.email_of(i) for i in ids}
    assert harness.emulator.early_retries == []
    requests = harness.emulator.recorded()
    assert requests and all(r.status == 200 for r in requests)
    assert all(r.headers["User-Agent"].startswith("contact-autoimport/") for r in requests)


def test_ties_on_the_cursor_s_timestamp_across_page_boundaries_arrive_once(harness: Harness):
    size = harness.page_size
    ids = harness.seed(size * 2, ties=size + size // 2)  # every page ends inside a tie
    ids += harness.seed(size // 2, ties=size // 4)

    contacts, _, _ = read(harness)

    assert Counter(ids_of(contacts)) == Counter(ids)


def test_an_incremental_read_gives_what_changed_after_a_saved_cursor(harness: Harness):
    ties = 3
    ids = harness.seed(harness.page_size + 10, ties=ties)
    _, cursor, _ = read(harness, until=bound(harness))
    harness.rename(ids[4], "Renamed")
    harness.rename(ids[-1], "Renamed too")
    added = harness.add()
    harness.delete(ids[7])

    contacts, _, _ = read(harness, cursor)

    live = [c for c in contacts if not c.deleted]
    by_id = {c.external_id: c for c in live}
    assert Counter(ids_of(live)).most_common(1)[0][1] == 1  # none twice
    assert by_id[ids[4]].first_name == "Renamed"
    assert by_id[ids[-1]].first_name == "Renamed too"
    assert added in by_id
    assert ids[7] not in by_id  # deleted: never read as a live contact
    assert [c.external_id for c in contacts if c.deleted] == (
        [ids[7]] if harness.lists_deletions else []
    )
    unchanged = set(by_id) - {ids[4], ids[-1], added}
    assert len(unchanged) <= harness.overlap(ties), unchanged


def test_a_record_changing_during_a_read_is_neither_lost_nor_doubled(harness: Harness):
    ids = harness.seed(harness.page_size * 2 + 10, ties=7)
    until = bound(harness)
    connector = harness.connector()
    first = connector.fetch_page(harness.criteria, "", until)
    read_already, not_yet = first.contacts[3].external_id, ids[-3]
    assert not_yet not in ids_of(first.contacts)
    harness.rename(read_already, "Early")
    harness.rename(not_yet, "Late")
    rest, cursor, _ = read_chain(connector, first.cursor, criteria=harness.criteria, until=until)
    this_read = ids_of(first.contacts + rest)

    next_read, _, _ = read_chain(connector, cursor, criteria=harness.criteria)

    assert Counter(this_read).most_common(1)[0][1] == 1  # none doubled within a read
    assert set(this_read) | {not_yet} == set(ids)  # the unchanged ones, all in this read
    for changed, name in ((read_already, "Early"), (not_yet, "Late")):
        # In this read or the next, with the change: never lost.
        last = [c for c in first.contacts + rest + next_read if c.external_id == changed][-1]
        assert last.first_name == name


def test_a_read_resumes_from_a_saved_cursor_and_a_page_cursor_reads_its_page_again(
    harness: Harness,
):
    ids = harness.seed(harness.page_size * 2 + 10, ties=5)
    until = bound(harness)
    first = harness.connector().fetch_page(harness.criteria, "", until)
    second = harness.connector().fetch_page(harness.criteria, first.cursor, until)
    again = harness.connector().fetch_page(harness.criteria, first.cursor, until)

    assert ids_of(again.contacts) == ids_of(second.contacts)
    rest, _, _ = read(harness, first.cursor, until)  # a new connector, as the next sync has
    assert Counter(ids_of(first.contacts + rest)) == Counter(ids)


def test_a_read_resumes_from_inside_a_page(harness: Harness):
    """A cap stops a page (reached by the cursor of the one before) in its middle: the next
    sync resumes from the position of the last contact processed and reads exactly the rest,
    contacts sharing the cut's timestamp included."""
    ids = harness.seed(harness.page_size * 2 + 10, ties=harness.page_size // 4)
    until = bound(harness)
    first = harness.connector().fetch_page(harness.criteria, "", until)
    page = harness.connector().fetch_page(harness.criteria, first.cursor, until)
    cut = len(page.contacts) // 2 + 1
    position = page.contacts[cut].position
    assert position is not None, "every connector resumes inside a page"

    rest, _, _ = read(harness, position, until)

    processed = first.contacts + page.contacts[: cut + 1]
    assert Counter(ids_of(processed + rest)) == Counter(ids)


# -- consent and fields ---------------------------------------------------------------------


def test_an_opted_out_contact_comes_unsubscribed(harness: Harness):
    ids = harness.seed(5)
    has_consent = harness.opt_out(ids[2])

    by_id = {c.external_id: c for c in read(harness)[0]}

    assert by_id[ids[2]].opted_out == has_consent
    assert all(by_id[i].opted_out == harness.opted_out(i) for i in ids)


def test_custom_fields_are_declared_and_filled(harness: Harness):
    ids = harness.seed(3)
    declared = connectors.SOURCES[harness.service].declared_fields()
    values = harness.fill_fields(ids[1])
    assert set(values) == set(declared)  # every declared field can be filled

    contacts = read(harness)[0]

    by_id = {c.external_id: c for c in contacts}
    assert by_id[ids[1]].fields == values
    assert all(set(c.fields) <= set(declared) for c in contacts)


# -- rate limits and failures ------------------------------------------------------------------


def test_a_429_s_retry_after_is_waited_for_never_early(harness: Harness):
    harness.seed(3)
    harness.emulator.fail(harness.rate_limited(retry_after=0.4))

    contacts, _, _ = read(harness)

    assert len(contacts) == 3
    assert statuses(harness) == [429, 200]
    assert harness.emulator.early_retries == []


def test_a_429_without_retry_after_is_retried_after_a_backoff(harness: Harness):
    harness.seed(3)
    harness.emulator.min_backoff = http.BASE_DELAY / 2  # the shortest first wait of http.send
    harness.emulator.fail(harness.rate_limited(None), harness.rate_limited(None))

    contacts, _, _ = read(harness)

    assert len(contacts) == 3
    assert statuses(harness) == [429, 429, 200]
    assert harness.emulator.early_retries == []


def test_server_errors_are_retried_then_the_read_succeeds(harness: Harness):
    harness.seed(3)
    harness.emulator.fail(harness.unavailable(503), harness.unavailable(500))

    contacts, _, _ = read(harness)

    assert len(contacts) == 3
    assert statuses(harness) == [503, 500, 200]


def test_server_errors_that_outlast_the_retries_are_retryable(harness: Harness):
    harness.seed(3)
    harness.emulator.fail(*[harness.unavailable(503)] * http.ATTEMPTS)
    connector = harness.connector()

    with pytest.raises(RetryableError):
        connector.fetch_page(harness.criteria, "", bound(harness))
    page = connector.fetch_page(harness.criteria, "", bound(harness))  # the next sync

    assert len(page.contacts) == 3
    assert statuses(harness) == [503] * http.ATTEMPTS + [200]


def test_a_dropped_connection_is_retried(harness: Harness):
    harness.seed(3)
    harness.emulator.fail(Fault.dropped(), Fault.dropped())

    contacts, _, _ = read(harness)

    assert len(contacts) == 3
    assert statuses(harness) == [DROP, DROP, 200]


def test_unknown_credentials_are_an_auth_error_never_retried(harness: Harness):
    harness.seed(3)
    with pytest.raises(AuthError):
        harness.connector(valid=False).fetch_page(harness.criteria, "", bound(harness))
    assert statuses(harness) == [401]


def test_a_401_is_an_auth_error_or_refreshes_the_access_token(harness: Harness):
    harness.seed(3)
    harness.emulator.fail(harness.unauthorized())
    connector = harness.connector()

    if harness.refreshes_on_401:
        page = connector.fetch_page(harness.criteria, "", bound(harness))
        assert len(page.contacts) == 3 and page.credentials is not None
        assert statuses(harness) == [401, 200]
    else:
        with pytest.raises(AuthError):
            connector.fetch_page(harness.criteria, "", bound(harness))
        assert statuses(harness) == [401]


def test_revoked_access_needs_the_account_reconnected(harness: Harness):
    harness.seed(3)
    connector = harness.connector()
    harness.revoke()

    with pytest.raises(harness.revoked_error):
        connector.fetch_page(harness.criteria, "", bound(harness))


def test_no_secret_reaches_a_log_record_or_an_error(
    harness: Harness, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    harness.seed(3)
    errors: list[Exception] = []

    def attempt(valid: bool = True) -> None:
        connector = harness.connector(valid=valid)
        try:
            read_chain(connector, criteria=harness.criteria)
        except Exception as e:
            errors.append(e)

    attempt()
    harness.emulator.fail(harness.rate_limited(0.1), harness.unavailable(502), Fault.dropped())
    attempt()
    harness.emulator.fail(*[harness.unavailable(500)] * http.ATTEMPTS)
    attempt()
    harness.emulator.fail(harness.unauthorized())
    attempt()
    attempt(valid=False)
    secrets = harness.secrets()
    harness.revoke()
    attempt()

    assert len(errors) >= 3
    texts = caplog.text + "".join(f"{e}{e!r}{e.__cause__!r}" for e in errors)
    for secret in secrets | harness.secrets():
        assert secret not in texts


# -- the connection check ----------------------------------------------------------------------


def check(harness: Harness, account: str | None = None, *, valid: bool = True) -> list[Finding]:
    """A new connector's check of `account` (default: the emulated one)."""
    connector = harness.connector(valid=valid)
    try:
        return connector.check_connection(harness.criteria, account or harness.external_account())
    finally:
        connector.close()


def test_valid_credentials_pass_every_check_in_order(harness: Harness):
    harness.seed(3)

    findings = check(harness)

    assert [f.check for f in findings] == list(CONNECTION_CHECKS)
    assert all(f.ok and f.detail for f in findings), findings
    assert all(r.status < 400 for r in harness.emulator.recorded())


def test_unknown_credentials_fail_the_first_check_and_the_rest_is_not_tried(harness: Harness):
    findings = by_check(check(harness, valid=False))

    assert not findings["credentials"].ok and findings["credentials"].detail
    for name in CONNECTION_CHECKS[1:]:
        assert findings[name] == Finding(name, False, NOT_TRIED)


def test_revoked_access_fails_the_credentials_check(harness: Harness):
    connector = harness.connector()
    harness.revoke()

    findings = by_check(connector.check_connection(harness.criteria, harness.external_account()))

    assert not findings["credentials"].ok
    assert findings["scopes"].detail == NOT_TRIED


def test_another_external_account_is_named_with_the_one_the_credentials_reach(harness: Harness):
    other = harness.other_account()

    findings = by_check(check(harness, other))

    account = findings["external account"]
    assert not account.ok
    assert other in account.detail and harness.external_account() in account.detail
    assert findings["credentials"].ok and findings["scopes"].ok


def test_credentials_that_may_not_read_the_contacts_fail_the_scopes_check(harness: Harness):
    harness.limit_scopes()

    findings = by_check(check(harness))

    assert findings["credentials"].ok
    assert not findings["scopes"].ok and findings["scopes"].detail


def test_an_unreachable_service_is_retryable_for_the_check(harness: Harness):
    connector = harness.connector()
    harness.emulator.stop()
    try:
        with pytest.raises(RetryableError):
            connector.check_connection(harness.criteria, harness.external_account())
    finally:
        connector.close()


def test_no_secret_reaches_a_finding_or_a_log_record_of_the_check(
    harness: Harness, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    findings = (
        check(harness) + check(harness, valid=False) + check(harness, harness.other_account())
    )
    harness.emulator.fail(harness.unauthorized())
    findings += check(harness)
    harness.limit_scopes()
    findings += check(harness)
    secrets = harness.secrets()
    harness.revoke()
    findings += check(harness)

    texts = caplog.text + "".join(f.detail for f in findings)
    for secret in secrets | harness.secrets():
        assert secret not in texts


# -- end to end: a real server reading the emulator --------------------------------------------


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("service", SERVICES, ids=str)
def test_an_import_syncs_everyone_once_over_capped_windows_then_what_changed(
    service: str, store: str, tmp_path: Path
):
    """Three syncs in three windows (500 contacts each at most): each contact counted once over
    the pass; then a change, an addition and a deletion at the source come with the next sync."""
    harness_type = harness_of(service)
    interval = harness_type.interval
    with (
        harness_type(end_to_end=True) as harness,  # type: ignore[call-arg]
        store_env(store, tmp_path) as env,
        ServerProcess(
            {**env, **harness.server_env(), "AUTOIMPORT_SYNC_INTERVAL": str(interval)}
        ) as server,
        server.client(server.admin_token) as admin,
    ):
        ids = harness.seed(1200, ties=200, bad_emails=True)
        emails = {i: harness.email_of(i) for i in ids}
        valid = [i for i in ids if "@" in emails[i]]
        missing = sum(1 for i in ids if not emails[i])
        invalid = len(ids) - missing - len(valid)
        assert missing and invalid  # the source has both kinds to skip
        name = harness.create_import(admin, contact_limit=100_000).name
        account_id = account_of(name)

        def sync() -> pb.SyncReport:
            return admin.imports.TriggerSync(pb.TriggerSyncRequest(name=name), timeout=120)

        reports = []
        for _ in range(3):
            wait_for_next_window(interval)
            reports.append(sync())
        windows = [
            {int(t.ToDatetime().timestamp() // interval) for t in (r.start_time, r.end_time)}
            for r in reports
        ]
        # A sync that outlives its window draws on the next one's budget: the counts below
        # would then be right for the service but not for this test (a machine too busy for
        # the harness's interval).
        assert all(len(w) == 1 for w in windows), f"a sync crossed a {interval} s window"
        assert [r.outcome for r in reports] == [
            pb.SyncReport.CAPPED,
            pb.SyncReport.CAPPED,
            pb.SyncReport.COMPLETED,
        ], reports
        assert [r.added for r in reports] == [500, 500, len(valid) - 1000]
        assert pass_counts(reports) == {
            "fetched": 1200,
            "skipped_missing_email": missing,
            "skipped_invalid_email": invalid,
            "deleted_at_source": 0,
        }, reports
        contacts = all_contacts(admin, account_id)
        assert sorted(c.email for c in contacts) == sorted(emails[i] for i in valid)
        opted_out = {c.email for c in contacts if c.status != cpb.Contact.ACTIVE}
        assert opted_out == {emails[i] for i in valid if harness.opted_out(i)}

        renamed, deleted = valid[7], valid[8]
        harness.rename(renamed, "Renamed")
        added = harness.add()
        harness.delete(deleted)
        harness.settle()
        wait_for_next_window(interval)
        report = sync()

        assert report.outcome == pb.SyncReport.COMPLETED, report
        assert (report.updated, report.added) == (1, 1), report
        assert report.deleted_at_source == (1 if harness.lists_deletions else 0)
        after = {c.email: c for c in all_contacts(admin, account_id)}
        assert len(after) == len(valid) + 1
        assert after[emails[renamed]].first_name == "Renamed"
        assert harness.email_of(added) in after
        assert emails[deleted] in after  # deleted at the source: the account keeps it
        assert harness.emulator.early_retries == []
        assert {r.status for r in harness.emulator.recorded()} <= {200, 429}
        harness.check_traffic()
        server.terminate()
        log = "".join(server.output)
        for secret in harness.secrets():
            assert secret not in log

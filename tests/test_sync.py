"""The sync engine against a scripted source, in-process, on SQLite and PostgreSQL: one test per
rule of design.md section 4 (invariants 1 to 8)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from eventsourcing.application import project_aggregate

from connectors import base
from connectors.base import AuthError, ReauthRequired
from connectors.shopify import ShopifyCriteria
from domain.auto_import import (
    AUTH_FAILURES_BEFORE_REAUTH,
    TOKEN_REFRESH_ACTOR,
    AutoImport,
    ImportState,
)
from domain.errors import ImportNeedsReauth, ImportNotActive
from domain.import_settings import Credentials, ImportChanges, NewImport
from domain.sync import DeclaredField
from service.application import AutoImports, etag_of
from service.config import Settings
from service.leases import Lease, LocalLeases
from service.projector import catch_up
from service.read_models import open_view
from service.read_models.contacts import ContactRow
from service.read_models.imports import ImportRow
from service.read_models.views import VIEW_CLASSES, AccountViews, AccountViewsProjection
from service.stores import open_application
from service.sync import SyncEngine
from tests.conftest import STORES
from tests.scripted import T0, ScriptedConnectors, ScriptedSource, SourceDown

INTERVAL = 1800.0
START = datetime(2026, 6, 1, tzinfo=UTC)  # the start of a sync window


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def next_window(self) -> None:
        self.now += timedelta(seconds=INTERVAL)


class World:
    """An application, its views, a scripted source per external account, and a sync engine."""

    def __init__(self, settings: Settings, **connector_options: Any):
        self.app: AutoImports = open_application(settings)
        name = AccountViewsProjection.name
        self.views: AccountViews = open_view(
            AccountViewsProjection, VIEW_CLASSES, settings.store_env(name)
        )
        self.projection = AccountViewsProjection(view=self.views)
        self.connectors = ScriptedConnectors(**connector_options)
        self.clock = Clock()
        self.engine = SyncEngine(
            self.app, self.connectors, interval=INTERVAL, leases=LocalLeases(), clock=self.clock
        )

    def account(self, account_id: str = "acme", limit: int = 100_000) -> str:
        self.app.upsert_account(account_id, "plus", limit, actor="admin")
        return account_id

    def new_import(
        self, external_account: str = "store-a", account_id: str = "acme", **settings: Any
    ) -> AutoImport:
        settings.setdefault("credentials", Credentials("token"))
        new = NewImport("shopify", external_account, **settings)
        return self.app.create_import(account_id, new, actor="admin")

    def source(self, external_account: str = "store-a") -> ScriptedSource:
        return self.connectors.source(external_account)

    def sync(self, auto_import: AutoImport, **kw: Any) -> dict[str, Any]:
        return self.engine.trigger(auto_import.account_id, auto_import.id, actor="scheduler", **kw)

    def contacts(self, account_id: str = "acme") -> list[ContactRow]:
        while catch_up(self.app, self.projection):
            pass
        rows, token = [], ""
        while True:
            page = self.views.list_contacts(account_id, 1000, token)
            rows += page.rows
            token = page.next_page_token
            if not token:
                return rows

    def close(self) -> None:
        self.views.datastore.close()
        self.app.close()


@pytest.fixture
def world(store_env: dict[str, str]) -> Iterator[World]:
    w = World(Settings.from_env(store_env))
    yield w
    w.close()


def emails(rows: list[ContactRow]) -> list[str]:
    return sorted(r.email for r in rows)


pytestmark = pytest.mark.parametrize("store_env", STORES, indirect=True)


# -- invariant 1 and 2: nothing lost, nothing doubled -------------------------------------------


def test_first_sync_pulls_every_contact_and_later_syncs_only_changes(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().fill(120)

    first = world.sync(auto_import)
    world.source().touch("c000007", T0 + timedelta(hours=1), first_name="Seven")
    world.source().put("new1", "new1@example.com", T0 + timedelta(hours=1))
    second = world.sync(auto_import)
    third = world.sync(auto_import)

    assert (first.outcome, first.fetched, first.added) == ("COMPLETED", 120, 120)
    assert (second.fetched, second.added, second.updated) == (2, 1, 1)
    assert (third.fetched, third.added, third.updated) == (0, 0, 0)
    rows = world.contacts()
    assert len(rows) == 121
    assert next(r for r in rows if r.email == "c000007@example.com").first_name == "Seven"


def test_1200_contacts_sharing_one_timestamp_arrive_over_three_windows_none_twice(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().fill(1200, updated_at=T0)  # every contact ties on updated_at

    reports = []
    for _ in range(3):
        reports.append(world.sync(auto_import))
        world.clock.next_window()

    assert [r.added for r in reports] == [500, 500, 200]
    assert [r.outcome for r in reports] == ["CAPPED", "CAPPED", "COMPLETED"]
    assert reports[0].deferred > 0
    rows = world.contacts()
    assert emails(rows) == sorted(f"c{n:06d}@example.com" for n in range(1200))


def test_a_second_sync_in_the_same_window_adds_nothing_more(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().fill(600)

    first = world.sync(auto_import)
    second = world.sync(auto_import)

    assert (first.added, first.outcome) == (500, "CAPPED")
    assert (second.added, second.outcome) == (0, "CAPPED")
    world.clock.next_window()
    assert world.sync(auto_import).added == 100


def test_contacts_changed_while_a_sync_runs_are_not_lost(world: World):
    world.account()
    auto_import = world.new_import()
    source = world.source()
    source.fill(250)

    def change_the_source(page: int) -> None:
        if page == 1:  # after the first page was read and saved
            late = START + timedelta(seconds=5)  # after the sync started
            source.touch("c000010", late, first_name="Changed")  # already imported
            source.touch("c000200", late, first_name="Moved")  # not read yet
            source.put("late1", "late1@example.com", late)

    world.connectors.options["before_page"] = change_the_source
    first = world.sync(auto_import)
    world.clock.now += timedelta(seconds=60)
    world.connectors.options.clear()
    second = world.sync(auto_import)

    assert first.added == 249  # c000200 moved past the sync's upper bound
    assert (second.added, second.updated) == (2, 1)
    rows = {r.email: r for r in world.contacts()}
    assert len(rows) == 251
    assert rows["c000010@example.com"].first_name == "Changed"
    assert rows["c000200@example.com"].first_name == "Moved"


def test_a_failed_sync_resumes_from_its_last_saved_page(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().fill(350)

    def fail_on_third_page(page: int) -> None:
        if page == 2:
            raise SourceDown("the source went away")

    world.connectors.options["before_page"] = fail_on_third_page
    failed = world.sync(auto_import)
    world.connectors.options.clear()
    resumed = world.sync(auto_import)

    assert (failed.outcome, failed.added, failed.error) == (
        "FAILED",
        200,
        "the source went away",
    )
    assert (resumed.outcome, resumed.added, resumed.fetched) == ("COMPLETED", 150, 150)
    assert len(world.contacts()) == 350


def test_missing_and_invalid_emails_are_skipped_with_their_reason(world: World):
    world.account()
    auto_import = world.new_import()
    source = world.source()
    source.put("ok", "Ok@Example.COM")
    source.put("none", "")
    source.put("bad", "not-an-email")
    source.put("bad2", "a@@b.com")

    report = world.sync(auto_import)

    assert (report.added, report.skipped_missing_email, report.skipped_invalid_email) == (
        1,
        1,
        2,
    )
    assert {(s.external_id, s.reason) for s in report.skipped} == {
        ("none", "missing email"),
        ("bad", "invalid email"),
        ("bad2", "invalid email"),
    }
    assert emails(world.contacts()) == ["ok@example.com"]


def test_a_record_the_source_refuses_is_skipped_with_the_source_s_reason(world: World):
    """A connector may say a record is not to import (Mailchimp's unconfirmed opt-ins): it is
    skipped whatever its email, listed with the source's words, and counted apart."""
    world.account()
    auto_import = world.new_import()
    source = world.source()
    source.put("ok", "ok@example.com")
    source.put("pending", "pending@example.com", skip_reason="pending: unconfirmed opt-in")
    source.put("odd", "", skip_reason="transactional: not a marketing contact")

    report = world.sync(auto_import)

    assert (report.added, report.skipped_at_source, report.fetched) == (1, 2, 3)
    assert (report.skipped_missing_email, report.skipped_invalid_email) == (0, 0)
    assert {(s.external_id, s.email, s.reason) for s in report.skipped} == {
        ("pending", "pending@example.com", "pending: unconfirmed opt-in"),
        ("odd", "", "transactional: not a marketing contact"),
    }
    assert emails(world.contacts()) == ["ok@example.com"]
    (listed,) = world.views.list_syncs(str(auto_import.id), 10, "").reports
    assert listed.skipped_at_source == 2


def test_one_contact_per_email_across_imports_and_spellings(world: World):
    world.account()
    first, second = world.new_import("store-a"), world.new_import("store-b")
    world.source("store-a").put("1", "Jane@Example.com")
    world.source("store-b").put("9", "jane@example.COM", first_name="Jane")

    world.sync(first)
    report = world.sync(second)

    assert (report.added, report.updated) == (0, 1)
    rows = world.contacts()
    assert len(rows) == 1 and rows[0].first_name == "Jane"
    assert set(rows[0].sources) == {str(first.id), str(second.id)}


# -- invariant 3: the contact limit ---------------------------------------------------------------


def test_limit_1000_with_1300_candidates_adds_exactly_1000_and_still_updates(world: World):
    world.account(limit=1000)
    auto_import = world.new_import()
    world.source().fill(1300)

    reports = []
    for _ in range(3):
        reports.append(world.sync(auto_import))
        world.clock.next_window()
    world.source().touch("c000001", T0 + timedelta(days=1), first_name="Updated")
    after_limit = world.sync(auto_import)

    assert sum(r.added for r in reports) == 1000
    assert [r.outcome for r in reports] == ["CAPPED", "LIMIT_REACHED", "COMPLETED"]
    assert sum(r.blocked_by_limit for r in reports) == 300
    assert (after_limit.updated, after_limit.added) == (1, 0)
    rows = world.contacts()
    assert len(rows) == 1000
    assert next(r for r in rows if r.email == "c000001@example.com").first_name == "Updated"
    assert world.app.get_account("acme").contact_count == 1000


def test_concurrent_syncs_of_four_imports_never_exceed_the_limit_or_double_an_email(world: World):
    world.account(limit=700)
    imports = [world.new_import(f"store-{n}") for n in range(4)]
    for n in range(4):
        source = world.source(f"store-{n}")
        source.fill(300, prefix=f"s{n}-")
        source.fill(100, prefix="shared")  # the same 100 people in every store

    errors: list[BaseException] = []

    def run(auto_import: AutoImport) -> None:
        try:
            world.sync(auto_import)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in imports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    rows = world.contacts()
    assert len(rows) == 700 == len(set(emails(rows)))
    assert world.app.get_account("acme").contact_count == 700


# -- invariant 4: 500 per window per external account ------------------------------------------


def test_two_imports_of_one_external_account_share_500_per_window(world: World):
    world.account()
    vip = world.new_import("store-a", criteria=ShopifyCriteria(customer_tag="vip"))
    everyone = world.new_import("store-a")
    world.source("store-a").fill(400)

    first = world.sync(vip)
    second = world.sync(everyone)
    world.clock.next_window()
    third = world.sync(everyone)

    assert first.added == 400
    assert second.added + second.updated == 100 and second.outcome == "CAPPED"
    assert third.updated == 300
    assert len(world.contacts()) == 400


# -- invariant 5: consent -------------------------------------------------------------------------


def test_an_unsubscribed_contact_stays_unsubscribed_when_an_import_updates_it(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().put("1", "jane@example.com")
    world.sync(auto_import)
    world.app.unsubscribe_contact("acme", "jane@example.com", actor="key:x")
    world.source().touch("1", T0 + timedelta(hours=1), first_name="Jane", opted_out=False)

    report = world.sync(auto_import)

    assert report.updated == 1
    (row,) = world.contacts()
    assert (row.status, row.first_name) == ("UNSUBSCRIBED", "Jane")


def test_a_new_contact_that_opted_out_at_the_source_is_added_unsubscribed(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().put("1", "out@example.com", opted_out=True)
    world.source().put("2", "in@example.com")

    world.sync(auto_import)

    statuses = {r.email: r.status for r in world.contacts()}
    assert statuses == {"out@example.com": "UNSUBSCRIBED", "in@example.com": "ACTIVE"}


def test_imported_contacts_get_the_imports_lists_and_tags(world: World):
    world.account()
    auto_import = world.new_import(list_ids=["newsletter"], tags=["shopify"])
    world.source().put("1", "jane@example.com")
    world.sync(auto_import)
    world.app.update_import(
        "acme", auto_import.id, ImportChanges(tags=["vip"]), etag="", actor="admin"
    )
    world.source().touch("1", T0 + timedelta(hours=1))

    world.sync(auto_import)

    (row,) = world.contacts()
    assert (row.list_ids, row.tags) == (["newsletter"], ["shopify", "vip"])


# -- invariant 6: fields ----------------------------------------------------------------------


def test_a_field_is_created_once_across_two_imports_of_the_same_service(world: World):
    world.account()
    first, second = world.new_import("store-a"), world.new_import("store-b")
    world.source("store-a").put("1", "a@example.com", fields={"total_spent": "10.00"})
    world.source("store-b").put(
        "2", "b@example.com", fields={"total_spent": "20.00", "country": "FR"}
    )

    reports = [world.sync(first), world.sync(second)]

    assert [r.fields_created for r in reports] == [1, 1]  # Total Spent, then Country
    world.contacts()
    fields = world.views.list_fields("acme", "shopify")
    assert sorted((f.title, f.personalization_tag) for f in fields) == [
        ("Shopify Country", "%SHOPIFY_COUNTRY%"),
        ("Shopify Total Spent", "%SHOPIFY_TOTAL_SPENT%"),
    ]
    values = {r.email: r.fields for r in world.contacts()}
    assert values["b@example.com"] == {"%SHOPIFY_TOTAL_SPENT%": "20.00", "%SHOPIFY_COUNTRY%": "FR"}


def test_fields_a_source_declares_as_it_reads_are_created_like_its_fixed_ones(
    store_env: dict[str, str],
):
    """A source whose fields depend on the account (an audience's merge fields) declares them
    with its pages: the first contact with a value creates each field, once per account."""
    company = DeclaredField("merge_COMPANY", "Shopify Company Name", "%SHOPIFY_COMPANY_NAME%")
    world = World(Settings.from_env(store_env), declared_fields=(company,))
    try:
        _sync_with_declared_fields(world, company)
    finally:
        world.close()


def _sync_with_declared_fields(world: World, company: DeclaredField) -> None:
    world.account()
    auto_import = world.new_import()
    world.source().put("1", "a@example.com", fields={"merge_COMPANY": "Acme", "tags": "vip"})
    world.source().put("2", "b@example.com", fields={"merge_COMPANY": "Beta"})

    first = world.sync(auto_import)
    world.clock.next_window()
    world.source().touch("2", T0 + timedelta(seconds=1), fields={"merge_COMPANY": "Gamma"})
    second = world.sync(auto_import)

    assert (first.fields_created, second.fields_created) == (2, 0)
    values = {r.email: r.fields for r in world.contacts()}  # caught up
    fields = world.views.list_fields("acme", "shopify")
    assert sorted((f.title, f.personalization_tag) for f in fields) == [
        ("Shopify Company Name", "%SHOPIFY_COMPANY_NAME%"),
        ("Shopify Tags", "%SHOPIFY_TAGS%"),
    ]
    assert values["a@example.com"] == {"%SHOPIFY_COMPANY_NAME%": "Acme", "%SHOPIFY_TAGS%": "vip"}
    assert values["b@example.com"] == {"%SHOPIFY_COMPANY_NAME%": "Gamma"}


# -- running syncs, states ------------------------------------------------------------------------


def test_a_second_trigger_while_a_sync_runs_returns_the_running_sync(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().fill(150)
    reading, release = threading.Event(), threading.Event()

    def block_on_second_page(page: int) -> None:
        if page == 1:
            reading.set()
            release.wait(10)

    world.connectors.options["before_page"] = block_on_second_page
    results: list[dict[str, Any]] = []
    runner = threading.Thread(target=lambda: results.append(world.sync(auto_import)))
    runner.start()
    assert reading.wait(10)
    during = world.sync(auto_import)
    release.set()
    runner.join()

    assert during.outcome == "RUNNING" and during.sync_id == results[0].sync_id
    assert during.added == 100
    assert results[0].added == 150


class BusyLeases:
    """Leases someone else always holds; `meanwhile` runs while the caller tries for one."""

    def __init__(self, meanwhile: Callable[[], object]):
        self._meanwhile = meanwhile

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[Lease]:
        self._meanwhile()
        yield Lease(name, False)

    def check(self, name: str) -> None:
        pass


def test_a_trigger_that_finds_a_sync_ending_returns_that_sync(world: World):
    """The lease is held by a sync that saves its end just then: the trigger returns that sync
    rather than waiting in vain for a start (found by bench/load.py: UNAVAILABLE after 5 s)."""
    world.account()
    auto_import = world.new_import()
    world.source().fill(10)
    ended: list[dict[str, Any]] = []
    engine = SyncEngine(
        world.app,
        world.connectors,
        interval=INTERVAL,
        leases=BusyLeases(lambda: ended.append(world.sync(auto_import))),
        clock=world.clock,
    )

    during = engine.trigger(auto_import.account_id, auto_import.id, actor="scheduler")

    assert during.outcome == "COMPLETED" and during.sync_id == ended[0].sync_id


def test_a_retried_trigger_with_the_same_request_id_returns_the_same_sync(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().fill(10)

    first = world.sync(auto_import, request_id="5f0c3a3e-2b1c-4c55-9d43-6a3f2f5b8e01")
    again = world.sync(auto_import, request_id="5f0c3a3e-2b1c-4c55-9d43-6a3f2f5b8e01")

    assert again == first


def test_a_paused_import_does_not_sync(world: World):
    world.account()
    auto_import = world.new_import()
    world.app.pause_import("acme", auto_import.id, actor="admin")

    with pytest.raises(ImportNotActive):
        world.sync(auto_import)


def test_replaying_every_event_into_empty_views_gives_the_live_views(world: World):
    world.account(limit=300)
    first, second = world.new_import("store-a"), world.new_import("store-b")
    world.source("store-a").fill(200, prefix="a")
    world.source("store-b").fill(200, prefix="b")
    world.sync(first)
    world.sync(second)
    world.app.unsubscribe_contact("acme", "a000003@example.com", actor="admin")
    live = world.contacts()

    name = "replayed_views"
    replayed_views = open_view(
        type(name, (AccountViewsProjection,), {"name": name}),
        VIEW_CLASSES,
        _store_env_of(world, name),
    )
    replayed = AccountViewsProjection(view=replayed_views)
    while catch_up(world.app, replayed, batch=137):
        pass

    assert replayed_views.list_contacts("acme", 1000, "") == world.views.list_contacts(
        "acme", 1000, ""
    )
    assert len(live) == 300
    assert replayed_views.list_fields("acme", "") == world.views.list_fields("acme", "")
    assert replayed_views.list_imports("acme", "", 10, "") == world.views.list_imports(
        "acme", "", 10, ""
    )
    replayed_views.datastore.close()


def _store_env_of(world: World, name: str) -> dict[str, str]:
    """The environment of a fresh store for views called `name`, beside the live ones."""
    env = {**world.app.env, "CREATE_TABLE": "yes"}  # a store of its own: its tables are new
    if env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite":
        env["SQLITE_DBNAME"] = env["SQLITE_DBNAME"].replace("events.sqlite", f"{name}.sqlite")
    return env


# -- credentials: refreshed by the connector, rejected, revoked ----------------------------------


class CredentialsRejected(AuthError):
    pass


class GrantRevoked(ReauthRequired):
    pass


def fail_every_page_with(error: Exception) -> Callable[[int], None]:
    def fail(page: int) -> None:
        raise error

    return fail


def import_row(world: World, auto_import: AutoImport) -> ImportRow:
    world.contacts(auto_import.account_id)  # catches the views up
    row = world.views.get_import(auto_import.account_id, str(auto_import.id))
    assert row is not None
    return row


def test_a_revoked_grant_makes_the_import_wait_for_new_credentials(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().fill(3)
    reason = "Google revoked this import's access: reconnect the account"
    world.connectors.options["before_page"] = fail_every_page_with(GrantRevoked(reason))

    failed = world.sync(auto_import)

    assert (failed.outcome, failed.error) == ("FAILED", reason)
    loaded = world.app.get_import("acme", auto_import.id)
    assert (loaded.state, loaded.state_reason) == (ImportState.NEEDS_REAUTH, reason)
    row = import_row(world, auto_import)
    assert (row.state, row.state_reason, row.version) == (
        "NEEDS_REAUTH",
        reason,
        loaded.config_version,
    )
    with pytest.raises(ImportNeedsReauth):
        world.sync(auto_import)

    world.connectors.options.clear()
    world.app.update_import(
        "acme",
        auto_import.id,
        ImportChanges(credentials=Credentials("new-token")),
        etag=etag_of(loaded),
        actor="admin",
    )
    assert world.sync(auto_import).added == 3
    assert import_row(world, auto_import).state == "ACTIVE"


def test_credentials_rejected_three_syncs_in_a_row_need_reauth_a_success_between_resets(
    world: World,
):
    world.account()
    auto_import = world.new_import()
    world.source().fill(3)
    rejected = fail_every_page_with(CredentialsRejected("rejected: reconnect the account"))

    world.connectors.options["before_page"] = rejected
    for _ in range(AUTH_FAILURES_BEFORE_REAUTH - 1):
        world.sync(auto_import)
    world.connectors.options.clear()
    world.sync(auto_import)  # succeeds: the count starts again
    world.connectors.options["before_page"] = rejected
    for _ in range(AUTH_FAILURES_BEFORE_REAUTH - 1):
        world.sync(auto_import)
    assert world.app.get_import("acme", auto_import.id).state is ImportState.ACTIVE

    world.sync(auto_import)

    loaded = world.app.get_import("acme", auto_import.id)
    assert loaded.state is ImportState.NEEDS_REAUTH
    assert loaded.state_reason == "rejected: reconnect the account"


def test_a_source_that_fails_otherwise_never_needs_reauth(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().fill(3)
    world.connectors.options["before_page"] = fail_every_page_with(SourceDown("unavailable"))

    for _ in range(AUTH_FAILURES_BEFORE_REAUTH + 1):
        assert world.sync(auto_import).outcome == "FAILED"

    assert world.app.get_import("acme", auto_import.id).state is ImportState.ACTIVE


def test_an_access_token_the_connector_refreshed_is_kept_and_the_etag_stays(world: World):
    world.account()
    auto_import = world.new_import(credentials=Credentials("old-access", "refresh-1"))
    etag = etag_of(world.app.get_import("acme", auto_import.id))
    world.source().fill(3)
    refreshed = Credentials("new-access", "refresh-1", expires_at="2026-06-01T01:00:00+00:00")
    world.connectors.options["refreshed"] = refreshed

    assert world.sync(auto_import).added == 3

    loaded = world.app.get_import("acme", auto_import.id)
    assert loaded.credentials == refreshed
    assert etag_of(loaded) == etag
    assert import_row(world, auto_import).version == loaded.config_version
    rotations = [
        e
        for e in world.app.import_history("acme", auto_import.id)
        if isinstance(e, AutoImport.CredentialsRotated)
    ]
    assert [e.actor for e in rotations] == [TOKEN_REFRESH_ACTOR]


def test_a_refreshed_token_never_replaces_credentials_a_person_set_meanwhile(world: World):
    world.account()
    auto_import = world.new_import(credentials=Credentials("old-access", "refresh-1"))
    world.source().fill(3)

    def person_reconnects(page: int) -> None:
        current = world.app.get_import("acme", auto_import.id)
        world.app.update_import(
            "acme",
            auto_import.id,
            ImportChanges(credentials=Credentials("their-access", "refresh-2")),
            etag=etag_of(current),
            actor="admin",
        )

    world.connectors.options["before_page"] = person_reconnects
    world.connectors.options["refreshed"] = Credentials("new-access", "refresh-1")
    world.sync(auto_import)

    loaded = world.app.get_import("acme", auto_import.id)
    assert loaded.credentials == Credentials("their-access", "refresh-2")


def test_a_contact_deleted_at_the_source_stays_in_the_account_and_is_counted(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().fill(5)
    world.sync(auto_import)
    world.source().delete("c000002", T0 + timedelta(minutes=1))
    world.clock.next_window()

    report = world.sync(auto_import)

    assert (report.deleted_at_source, report.added, report.updated) == (1, 0, 0)
    assert report.skipped_missing_email == 0
    assert len(world.contacts()) == 5


def test_a_refresh_token_the_service_replaced_is_kept_with_the_new_access_token(world: World):
    world.account()
    auto_import = world.new_import(credentials=Credentials("old-access", "refresh-1"))
    world.source().fill(3)
    world.connectors.options["refreshed"] = Credentials("new-access", "refresh-2")

    world.sync(auto_import)

    loaded = world.app.get_import("acme", auto_import.id)
    assert loaded.credentials == Credentials("new-access", "refresh-2")


def test_a_sync_stops_at_its_callers_deadline_and_the_next_one_resumes(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    world.account()
    auto_import = world.new_import()
    world.source().fill(350)
    now = [1000.0]  # the monotonic clock the deadline is measured on, moved by the test
    monkeypatch.setattr(base, "time", SimpleNamespace(monotonic=lambda: now[0]))

    def second_page_outlasts_the_deadline(page: int) -> None:
        if page == 1:
            now[0] += 1.2

    world.connectors.options["before_page"] = second_page_outlasts_the_deadline
    stopped = world.sync(auto_import, deadline=now[0] + 1.0)
    world.connectors.options.clear()
    resumed = world.sync(auto_import)

    assert (stopped.outcome, stopped.added, stopped.error) == (
        "FAILED",
        200,
        base.DEADLINE_PASSED,
    )
    assert (resumed.outcome, resumed.added) == ("COMPLETED", 150)
    assert len(world.contacts()) == 350


# -- snapshots -----------------------------------------------------------------------------------


def test_an_import_snapshotted_within_a_page_loads_as_its_events_replayed(
    world: World, store_env: dict[str, str]
):
    """A page saves hundreds of events at once; the snapshot is taken of the import in hand, at
    the page's last version, not at the multiple of the interval inside it."""
    world.account()
    auto_import = world.new_import()
    world.source().fill(450)
    world.sync(auto_import)

    fresh = open_application(Settings.from_env(store_env))  # nothing cached: from the snapshot
    try:
        snapshots = list(fresh.snapshots.get(auto_import.id)) if fresh.snapshots else []
        loaded = fresh.get_import("acme", auto_import.id)
        replayed = project_aggregate(None, fresh.events.get(auto_import.id))  # no snapshot
    finally:
        fresh.close()

    assert snapshots and all(s.originator_version % 200 != 0 for s in snapshots)
    assert vars(loaded) == vars(replayed)

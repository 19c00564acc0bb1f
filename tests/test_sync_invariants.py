"""The sync engine's invariants under real timing (issue 8): window boundaries and skewed clocks,
writes whose acknowledgement is lost, concurrent writes between a page's load and its save,
pauses, edits and deletes while a sync runs. In-process, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import service.sync
from connectors.shopify import ShopifyCriteria
from domain.auto_import import AutoImport
from domain.external_account import CONTACTS_PER_WINDOW, ExternalAccount
from domain.import_settings import ImportChanges
from service.config import Settings
from service.leases import LocalLeases
from service.projector import catch_up
from service.sync import SyncEngine
from tests.conftest import STORES
from tests.scripted import ScriptedConnectors
from tests.test_sync import INTERVAL, START, World

pytestmark = pytest.mark.parametrize("store_env", STORES, indirect=True)

BOUNDARY = START + timedelta(seconds=INTERVAL)  # where window W ends and W + 1 begins
STEP_TIMEOUT = 30.0  # seconds a sync may take to reach its next page before the test fails


@pytest.fixture
def world(store_env: dict[str, str]) -> Iterator[World]:
    w = World(Settings.from_env(store_env))
    yield w
    w.close()


def history(world: World, aggregate_id: Any) -> list[Any]:
    return list(world.app.events.get(aggregate_id))


def event_names(world: World, auto_import: AutoImport) -> list[str]:
    return [type(e).__name__ for e in history(world, auto_import.id)]


def budget_by_window(world: World, account_id: str, external_account: str) -> list[tuple[int, int]]:
    """(window, count) of every BudgetUsed of the external account, in order."""
    external_id = ExternalAccount.create_id(account_id, "shopify", external_account)
    return [
        (e.window, e.count)
        for e in history(world, external_id)
        if isinstance(e, ExternalAccount.BudgetUsed)
    ]


class Stepper:
    """Runs syncs in threads and lets exactly one of them take a step at a time: a step is
    everything from one page's fetch to the next page's (its save included). The test says
    whose turn it is; no sleeps."""

    def __init__(self) -> None:
        self._arrived: dict[str, threading.Semaphore] = {}
        self._go: dict[str, threading.Semaphore] = {}
        self._done: dict[str, bool] = {}
        self.results: dict[str, Any] = {}

    def gate(self, name: str) -> Callable[[int], None]:
        """A `before_page` hook that waits for `name`'s turn."""
        self._arrived[name] = threading.Semaphore(0)
        self._go[name] = threading.Semaphore(0)
        self._done[name] = False

        def before_page(_page: int) -> None:
            self._arrived[name].release()
            if not self._go[name].acquire(timeout=STEP_TIMEOUT):
                raise TimeoutError(f"{name} was never given its turn")

        return before_page

    def start(self, name: str, run: Callable[[], Any]) -> None:
        def body() -> None:
            try:
                self.results[name] = run()
            except BaseException as e:
                self.results[name] = e
            finally:
                self._done[name] = True
                self._arrived[name].release()

        threading.Thread(target=body, name=f"sync-{name}", daemon=True).start()
        self._wait(name)

    def step(self, name: str) -> bool:
        """Lets `name` take one step; False when it has finished."""
        if self._done[name]:
            return False
        self._go[name].release()
        self._wait(name)
        return not self._done[name]

    def finish(self, order: list[str]) -> None:
        """Steps the syncs in `order` (cycled over those still running) until all are done."""
        turns = iter(order)
        while not all(self._done.values()):
            name = next(turns, None) or next(n for n, done in self._done.items() if not done)
            self.step(name)

    def _wait(self, name: str) -> None:
        if not self._arrived[name].acquire(timeout=STEP_TIMEOUT):
            raise TimeoutError(f"{name} did not reach its next page")


def fixed_clock(at: datetime) -> Callable[[], datetime]:
    return lambda: at


# -- defect 1: the 500 budget across a window boundary, with clocks apart -------------------


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(order=st.lists(st.sampled_from(["ahead", "behind"]), max_size=40), data=st.data())
def test_replicas_two_seconds_apart_across_a_boundary_never_exceed_500_per_window(
    world: World, order: list[str], data: st.DataObject
):
    """Two imports of one shop, synced by two engines whose clocks stand on either side of a
    window boundary, their pages interleaved in any order, then a third trigger: the shop's
    budget is charged to the newest window seen, at most 500 a window, never backwards."""
    account_id = f"acme-{data.draw(st.uuids()).hex[:8]}"
    world.account(account_id)
    first = world.new_import("shop-x", account_id)
    second = world.new_import("shop-x", account_id)
    stepper = Stepper()
    engines = {}
    clocks = {"behind": BOUNDARY - timedelta(seconds=1), "ahead": BOUNDARY + timedelta(seconds=1)}
    for name, at in clocks.items():
        connectors = ScriptedConnectors(page_size=100, before_page=stepper.gate(name))
        connectors.sources = world.connectors.sources  # both replicas read the same shop
        engines[name] = SyncEngine(
            world.app, connectors, interval=INTERVAL, leases=LocalLeases(), clock=fixed_clock(at)
        )
    world.source("shop-x").fill(1500, updated_at=START - timedelta(days=1))

    stepper.start("behind", lambda: engines["behind"].trigger(account_id, first.id, actor="s"))
    stepper.start("ahead", lambda: engines["ahead"].trigger(account_id, second.id, actor="s"))
    stepper.finish(order)
    for name in ("behind", "ahead"):
        assert not isinstance(stepper.results[name], BaseException), stepper.results[name]
    later = fixed_clock(BOUNDARY + timedelta(seconds=3))  # a third trigger, on the replica ahead
    third = SyncEngine(
        world.app, world.connectors, interval=INTERVAL, leases=LocalLeases(), clock=later
    )
    third.trigger(account_id, first.id, actor="s")

    charges = budget_by_window(world, account_id, "shop-x")
    windows = [w for w, _ in charges]
    assert windows == sorted(windows), f"the window moved backwards: {charges}"
    used: dict[int, int] = defaultdict(int)
    for window, count in charges:
        used[window] += count
    assert all(count <= CONTACTS_PER_WINDOW for count in used.values()), dict(used)
    reports = [stepper.results["behind"], stepper.results["ahead"]]
    reports += [world.app.get_import(account_id, first.id).last_sync]
    written = sum(r.added + r.updated for r in reports)
    assert written == sum(used.values()) <= 2 * CONTACTS_PER_WINDOW  # windows W and W + 1


def test_a_page_is_charged_to_the_window_in_force_when_it_is_saved(world: World):
    """A sync that began just before the boundary and saves its pages after it uses the new
    window's budget, not the old one's."""
    world.account()
    auto_import = world.new_import()
    world.source().fill(300)
    world.clock.now = BOUNDARY - timedelta(seconds=1)
    world.connectors.options.update(page_size=100)

    def cross_the_boundary(page: int) -> None:
        if page == 1:
            world.clock.now = BOUNDARY + timedelta(seconds=1)

    world.connectors.options["before_page"] = cross_the_boundary
    world.sync(auto_import)

    window = int(BOUNDARY.timestamp() // INTERVAL)
    assert budget_by_window(world, "acme", "store-a") == [
        (window - 1, 100),
        (window, 100),
        (window, 100),
    ]


# -- defect 3: a write that committed though its caller was told it failed -----------------


def lose_acknowledgement(world: World, monkeypatch: pytest.MonkeyPatch, call: int) -> list[int]:
    """The `call`-th insert of events (from 1) commits, then raises IntegrityError, as
    eventsourcing's PostgreSQL recorder does when it retries an insert whose first attempt
    committed but whose acknowledgement was lost."""
    recorder = world.app.recorder
    insert = recorder.insert_events
    calls = [0]

    def insert_then_fail(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        result = insert(*args, **kwargs)
        if calls[0] == call:
            raise IntegrityError("duplicate key value violates unique constraint (the retry)")
        return result

    monkeypatch.setattr(recorder, "insert_events", insert_then_fail)
    return calls


@pytest.mark.parametrize("lost", [1, 2, 3, 4], ids=["start", "page-1", "page-2", "finish"])
def test_a_save_whose_acknowledgement_is_lost_is_recognised_as_the_writers_own(
    world: World, monkeypatch: pytest.MonkeyPatch, lost: int
):
    world.account()
    auto_import = world.new_import()
    world.source().fill(150)
    world.connectors.options.update(page_size=100)
    lose_acknowledgement(world, monkeypatch, lost)

    report = world.sync(auto_import)

    names = event_names(world, auto_import)
    assert names.count("SyncStarted") == 1
    assert "SyncFailed" not in names
    assert (report.outcome, report.fetched, report.added) == ("COMPLETED", 150, 150)
    assert len(world.contacts()) == 150  # the projector applied everything
    page = world.views.list_syncs(str(auto_import.id), 10, "")
    assert [r.sync_id for r in page.reports] == [report.sync_id]


def test_the_projection_applies_two_endings_of_one_sync_and_keeps_the_last(world: World):
    """Histories written before the fix hold SyncFailed(S) then SyncCompleted(S): the
    projection must apply both (an upsert), not stop on the second for good."""
    world.account()
    auto_import = world.app.get_import("acme", world.new_import().id)
    for ending in ("fail", "complete"):
        auto_import.start_sync(
            sync_id="s-1", request_id="", now=START, until=START, actor="scheduler"
        )
        if ending == "fail":
            auto_import.fail_sync("interrupted: the server running it stopped", START)
        else:
            auto_import.complete_sync(START)
    world.app.save(auto_import)

    while catch_up(world.app, world.projection):
        pass

    page = world.views.list_syncs(str(auto_import.id), 10, "")
    assert [(r.sync_id, r.outcome) for r in page.reports] == [("s-1", "COMPLETED")]


# -- the retry branch of a page's save, forced -------------------------------------------------


def write_between_load_and_save(
    monkeypatch: pytest.MonkeyPatch, write: Callable[[], None], times: int = 1
) -> None:
    """Runs `write` (a concurrent change) while the engine decides a page: after it loaded the
    import, the account and the external account, before it saves them."""
    lookup = service.sync.contacts_by_email
    left = [times]

    def looked_up(*args: Any, **kwargs: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            write()
        return lookup(*args, **kwargs)

    monkeypatch.setattr(service.sync, "contacts_by_email", looked_up)


def test_a_page_that_meets_a_change_of_the_account_is_decided_again_once(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    world.account(limit=1000)
    auto_import = world.new_import()
    world.source().fill(150)
    world.connectors.options.update(page_size=100)
    write_between_load_and_save(
        monkeypatch, lambda: world.app.upsert_account("acme", "plus", 120, actor="admin")
    )

    report = world.sync(auto_import)

    # Decided again on the new limit: 120 added, the rest blocked; nothing counted twice.
    assert (report.fetched, report.added, report.blocked_by_limit) == (150, 120, 30)
    assert world.app.get_account("acme").contact_count == 120
    assert len(world.contacts()) == 120


def test_a_page_that_meets_another_imports_use_of_the_budget_takes_only_what_is_left(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    world.account()
    auto_import = world.new_import()
    world.source().fill(600)
    world.connectors.options.update(page_size=200)
    external_id = ExternalAccount.create_id("acme", "shopify", "store-a")
    window = int(START.timestamp() // INTERVAL)

    def another_import_uses_ten() -> None:
        external = ExternalAccount(account_id="acme", service="shopify", external_account="store-a")
        external.use(window, 10)
        world.app.save(external)

    write_between_load_and_save(monkeypatch, another_import_uses_ten)
    report = world.sync(auto_import)

    assert (report.added, report.outcome) == (490, "CAPPED")
    assert sum(c for _, c in budget_by_window(world, "acme", "store-a")) == 500
    assert world.app.repository.get(external_id).used == 500


# -- defects 4 and 5: pause, edit and delete while a sync runs -------------------------------


def test_a_sync_stopped_by_a_pause_retries_its_last_save_when_the_import_changes_again(
    world: World, monkeypatch: pytest.MonkeyPatch
):
    world.account()
    auto_import = world.new_import()
    world.source().fill(250)
    world.connectors.options.update(page_size=100)

    def pause(page: int) -> None:
        if page == 1:
            world.app.pause_import("acme", auto_import.id, actor="person")

    world.connectors.options["before_page"] = pause
    fail_sync = AutoImport.fail_sync
    edited = []

    def fail_sync_as_a_person_edits(self: AutoImport, *args: Any, **kwargs: Any) -> None:
        if not edited:  # between the engine's load and its save of "stopped"
            edited.append(True)
            changes = ImportChanges(display_name="Renamed meanwhile")
            world.app.update_import("acme", auto_import.id, changes, etag="", actor="person")
        fail_sync(self, *args, **kwargs)

    monkeypatch.setattr(AutoImport, "fail_sync", fail_sync_as_a_person_edits)
    report = world.sync(auto_import)

    assert (report.outcome, report.error) == ("FAILED", "stopped: the import became PAUSED")
    assert report.added == 100
    assert event_names(world, auto_import)[-1] == "SyncFailed"


def test_deleting_an_import_mid_sync_ends_its_sync_in_the_history(world: World):
    world.account()
    auto_import = world.new_import()
    world.source().fill(250)
    world.connectors.options.update(page_size=100)
    world.sync(auto_import)  # an earlier sync, whose report must not be answered
    world.source().fill(250, updated_at=START, prefix="n")

    def delete(page: int) -> None:
        if page == 1:
            world.app.delete_import("acme", auto_import.id, etag="", actor="person")

    world.connectors.options["before_page"] = delete
    report = world.sync(auto_import)

    events = history(world, auto_import.id)
    started = [e for e in events if isinstance(e, AutoImport.SyncStarted)][-1]
    assert report.sync_id == started.sync_id
    assert (report.outcome, report.error) == ("FAILED", "stopped: the import was deleted")
    assert report.added == 100
    assert [type(e).__name__ for e in events[-2:]] == ["SyncFailed", "Deleted"]
    while catch_up(world.app, world.projection):  # the ending of a deleted import's sync
        pass


# -- defect 2: a change of criteria restarts the read -----------------------------------------


def test_widening_the_criteria_reads_again_from_the_start_and_loses_nothing(world: World):
    """The cursor passes every record read, matching or not: after the criteria widen, the
    records it passed that match now must still arrive."""
    world.account()
    auto_import = world.new_import(criteria=ShopifyCriteria(customer_tag="vip"))
    source = world.source()
    for n in range(10):
        tags = {"vip"} if n < 7 else {"newsletter"}
        source.put(f"c{n}", f"c{n}@example.com", START - timedelta(days=1), tags=tags)
    world.connectors.options.update(apply_criteria=True, page_size=4)
    first = world.sync(auto_import)

    world.app.update_import(
        "acme",
        auto_import.id,
        ImportChanges(criteria=ShopifyCriteria(customer_tag="newsletter")),
        etag="",
        actor="person",
    )
    world.app.update_import(
        "acme", auto_import.id, ImportChanges(reset_criteria=True), etag="", actor="person"
    )
    world.clock.now += timedelta(minutes=1)
    second = world.sync(auto_import)

    assert first.added == 7
    assert (second.fetched, second.added, second.unchanged) == (10, 3, 7)
    assert len(world.contacts()) == 10
    names = event_names(world, auto_import)
    assert names.count("ReadRestarted") == 1  # the second edit found the read already restarted
    restarted = next(
        e for e in history(world, auto_import.id) if type(e).__name__ == "ReadRestarted"
    )
    assert "criteria" in restarted.reason


def test_a_sync_running_when_the_criteria_change_stops_before_its_next_page(world: World):
    world.account()
    auto_import = world.new_import(criteria=ShopifyCriteria(customer_tag="vip"))
    for n in range(10):
        world.source().put(f"c{n}", f"c{n}@example.com", START - timedelta(days=1), tags={"x"})
    world.connectors.options.update(apply_criteria=True, page_size=4)

    def widen(page: int) -> None:
        if page == 1:
            changes = ImportChanges(reset_criteria=True)
            world.app.update_import("acme", auto_import.id, changes, etag="", actor="person")

    world.connectors.options["before_page"] = widen
    stopped = world.sync(auto_import)
    world.connectors.options.pop("before_page")
    world.clock.now += timedelta(minutes=1)
    again = world.sync(auto_import)

    assert (stopped.outcome, stopped.error) == ("FAILED", "stopped: the criteria changed")
    assert (again.fetched, again.added) == (10, 10)

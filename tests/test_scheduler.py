"""The scheduler sidecar and the server's side of it (issue 9, design.md section 4 invariant 10):
due-time rules, the due imports listed across accounts, scheduled TriggerSync deciding on the
import itself, and `autoimport scheduler` processes against real servers (SQLite, PostgreSQL,
two replicas on one database), restarted, side by side, and at their in-flight limit.

Nothing here sleeps to synchronise: syncs are held at the scripted sources' gates
(`hold_at_page`), and conditions are polled for with `wait_for`. The periodic tests do wait for
intervals to pass, which is what they test."""

from __future__ import annotations

import collections
import itertools
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from autoimport.v1 import accounts_pb2 as apb
from autoimport.v1 import contacts_pb2 as cpb
from autoimport.v1 import imports_pb2 as pb
from connectors import SOURCES
from domain.auto_import import AutoImport
from domain.import_settings import Credentials, NewImport
from service.config import ConfigError, Settings
from service.leases import LocalLeases
from service.scheduler import Scheduler, SchedulerSettings
from service.sync import ALREADY_RUNNING, NOT_DUE, NotStarted, SyncEngine
from tests.conftest import STORES
from tests.scripted import InterferingApp
from tests.scripted_server import write_source
from tests.support import ROOT, ServerProcess, store_env, wait_for
from tests.test_api_imports import error_of
from tests.test_api_sync import SCRIPTED, SyncWorld, contacts_of
from tests.test_sync import INTERVAL, World

LONG = 3600.0  # an interval no test waits for: after its first sync, an import is not due


def at(t: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(t)
    return stamp


def time_of(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


# -- the due-time rule, in the domain ------------------------------------------------------------


def new_auto_import() -> AutoImport:
    return AutoImport.start(
        "acme", NewImport("shopify", "store", Credentials("t")), SOURCES, actor="admin"
    )


def test_an_import_is_due_at_once_then_one_interval_after_its_last_sync_began():
    auto_import = new_auto_import()
    created = auto_import.created_on
    assert auto_import.next_sync_time(60) == created
    assert auto_import.is_due(created, 60)

    began = created + timedelta(seconds=5)
    auto_import.start_sync(sync_id="s1", request_id="", now=began, until=began, actor="scheduler")
    running_due = auto_import.next_sync_time(60)
    auto_import.complete_sync(began + timedelta(seconds=50))  # a long sync: still from its start

    assert running_due == began + timedelta(seconds=60) == auto_import.next_sync_time(60)
    assert not auto_import.is_due(began + timedelta(seconds=60) - timedelta(microseconds=1), 60)
    assert auto_import.is_due(began + timedelta(seconds=60), 60)
    # After an outage of many intervals: due since one interval after the last start, once.
    assert auto_import.next_sync_time(60) == began + timedelta(seconds=60)
    assert auto_import.is_due(began + timedelta(hours=5), 60)


def test_a_failed_sync_also_counts_from_its_start():
    auto_import = new_auto_import()
    began = auto_import.created_on + timedelta(seconds=1)
    auto_import.start_sync(sync_id="s1", request_id="", now=began, until=began, actor="scheduler")
    auto_import.fail_sync("the source is down", began + timedelta(seconds=2))

    assert auto_import.next_sync_time(60) == began + timedelta(seconds=60)


def test_a_paused_deleted_or_disconnected_import_is_never_due():
    later = datetime.now(UTC) + timedelta(days=1)
    paused, deleted, disconnected = new_auto_import(), new_auto_import(), new_auto_import()
    paused.pause(actor="admin")
    deleted.delete(actor="admin")
    disconnected.start_sync(sync_id="s", request_id="", now=later, until=later, actor="x")
    disconnected.fail_sync("revoked", later, revoked=True)

    for auto_import in (paused, deleted, disconnected):
        assert auto_import.next_sync_time(60) is None
        assert not auto_import.is_due(later + timedelta(days=1), 60)
    paused.resume(actor="admin")
    assert paused.is_due(later, 60)


def test_scheduler_settings_follow_the_interval_and_refuse_a_deadline_past_it():
    settings = SchedulerSettings.from_env({"AUTOIMPORT_SYNC_INTERVAL": "1800"})
    assert (settings.poll, settings.jitter, settings.sync_timeout) == (10, 30, 1440)
    assert SchedulerSettings.from_env(
        {"AUTOIMPORT_SYNC_INTERVAL": "2", "AUTOIMPORT_SCHEDULER_CONCURRENCY": "9"}, poll=0.5
    ) == SchedulerSettings(interval=2, concurrency=9, jitter=0.2, poll=0.5, sync_timeout=1.6)
    with pytest.raises(ConfigError, match=r"SYNC_TIMEOUT must be .* shorter than"):
        SchedulerSettings.from_env(
            {"AUTOIMPORT_SYNC_INTERVAL": "60", "AUTOIMPORT_SCHEDULER_SYNC_TIMEOUT": "60"}
        )
    with pytest.raises(ConfigError, match="CONCURRENCY"):
        SchedulerSettings.from_env({"AUTOIMPORT_SCHEDULER_CONCURRENCY": "0"})


class FakeServer:
    """The two calls the scheduler makes: `due` imports listed every round (2 a page), and
    TriggerSyncs that wait for `release`, counted."""

    def __init__(self, due: list[str]):
        self.due = due
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.most_in_flight = 0
        self.most_of_one = 0
        self.calls: list[pb.TriggerSyncRequest] = []
        self.rounds = 0

    def ListDueImports(self, request: Any, metadata: Any, timeout: float) -> Any:
        start = int(request.page_token or 0)
        if start == 0:
            self.rounds += 1
        names = self.due[start : start + 2]
        more = str(start + 2) if start + 2 < len(self.due) else ""
        return pb.ListDueImportsResponse(
            due_imports=[pb.DueImport(name=n, next_sync_time=at(datetime.now(UTC))) for n in names],
            next_page_token=more,
        )

    def TriggerSync(self, request: Any, metadata: Any, timeout: float) -> Any:
        with self.lock:
            self.calls.append(request)
            self.in_flight[request.name] = self.in_flight.get(request.name, 0) + 1
            self.most_in_flight = max(self.most_in_flight, sum(self.in_flight.values()))
            self.most_of_one = max(self.most_of_one, self.in_flight[request.name])
        self.release.wait(30)
        with self.lock:
            self.in_flight[request.name] -= 1
        return pb.SyncReport(import_name=request.name, not_started=pb.SyncReport.NOT_DUE)


def test_the_scheduler_keeps_at_most_its_concurrency_in_flight_and_one_per_import():
    fake = FakeServer([f"accounts/a/imports/{n}" for n in range(7)])
    settings = SchedulerSettings(interval=60, concurrency=3, jitter=0, poll=0.01, sync_timeout=30)
    scheduler = Scheduler(fake, "adm_x", settings)  # type: ignore[arg-type]
    stopping = threading.Event()
    running = threading.Thread(target=scheduler.run, args=(stopping,))
    running.start()
    try:
        wait_for(lambda: len(fake.calls), lambda n: n == 3)
        rounds = fake.rounds
        wait_for(lambda: fake.rounds, lambda n: n >= rounds + 5)  # listing the 7 again and again
        rounds_later = len(fake.calls)
        fake.release.set()
        wait_for(lambda: {c.name for c in fake.calls}, lambda names: len(names) == 7)
    finally:
        fake.release.set()
        stopping.set()
        scheduler.stop_waiting()
        running.join(30)

    assert rounds_later == 3
    assert fake.most_in_flight == 3 and fake.most_of_one == 1
    assert all(c.scheduled and uuid.UUID(c.request_id) for c in fake.calls)
    assert len({c.request_id for c in fake.calls}) == len(fake.calls)  # a fresh one each


def test_the_scheduler_spreads_the_imports_due_together_over_its_jitter():
    fake = FakeServer([f"accounts/a/imports/{n}" for n in range(2000)])
    settings = SchedulerSettings(interval=600, concurrency=4, jitter=20, poll=60, sync_timeout=30)
    scheduler = Scheduler(fake, "", settings, rng=random.Random(7))  # type: ignore[arg-type]

    due = scheduler.look()
    again = scheduler.look()  # planned already: not planned twice
    fire_at = sorted(p.fire_at for p in scheduler._planned)

    assert (due, again) == (2000, 2000) and len(fire_at) == 2000
    assert fire_at[-1] - fire_at[0] > 19  # spread over the 20 s of jitter...
    per_second = collections.Counter(int(t - fire_at[0]) for t in fire_at)
    assert max(per_second.values()) < 2000 / 20 * 1.5  # ...about evenly, not in one second


# -- the engine's scheduled trigger, in-process with a clock -------------------------------------


@pytest.fixture(params=STORES)
def engine_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with store_env(request.param, tmp_path) as env:
        w = World(Settings.from_env(env))
        yield w
        w.close()


def new_import(world: World) -> AutoImport:
    world.account()
    auto_import = world.new_import()
    world.clock.now = datetime.now(UTC)  # imports are created at the wall clock's time
    return auto_import


def scheduled(world: World, auto_import: AutoImport, engine: SyncEngine | None = None) -> Any:
    return (engine or world.engine).trigger_scheduled(auto_import.account_id, auto_import.id)


def events_of(world: World, auto_import: AutoImport) -> list[str]:
    return [type(e).__name__ for e in world.app.events.get(auto_import.id)]


def test_a_scheduled_trigger_starts_a_sync_only_when_the_import_is_due(engine_world: World):
    world = engine_world
    auto_import = new_import(world)
    world.source().fill(3)

    first = scheduled(world, auto_import)
    world.clock.now += timedelta(seconds=INTERVAL) - timedelta(microseconds=1)
    events_before = events_of(world, auto_import)
    too_early = scheduled(world, auto_import)
    events_after = events_of(world, auto_import)
    world.clock.now += timedelta(microseconds=1)
    on_time = scheduled(world, auto_import)

    assert first.outcome == "COMPLETED" and first.added == 3
    assert too_early == NotStarted(
        NOT_DUE,
        first,
        first.start_time + timedelta(seconds=INTERVAL),
    )
    assert events_after == events_before  # nothing recorded
    assert on_time.outcome == "COMPLETED" and on_time.sync_id != first.sync_id
    history = list(world.app.events.get(auto_import.id))
    assert [e.actor for e in history if type(e).__name__ == "SyncStarted"] == ["scheduler"] * 2
    # A person's trigger runs at once, due or not.
    assert world.sync(auto_import).outcome == "COMPLETED"


def test_a_paused_or_disconnected_import_is_not_due_for_the_scheduler(engine_world: World):
    world = engine_world
    auto_import = new_import(world)
    world.app.pause_import("acme", auto_import.id, actor="admin")

    reply = scheduled(world, auto_import)

    assert reply == NotStarted(NOT_DUE, None, None)


def test_two_replicas_whose_leases_both_hold_still_start_one_sync_of_a_due_import(
    engine_world: World,
):
    """The due check is on the write side: replica A checks, replica B starts a sync before A
    saves its start (as if both held the lease: a lost lease, a partition); A's save meets B's
    write, A reloads the import, finds it not due, and starts nothing."""
    world = engine_world
    auto_import = new_import(world)
    world.source().fill(2)
    interfering = InterferingApp(world.app)
    replica_a = SyncEngine(
        interfering, world.connectors, interval=INTERVAL, leases=LocalLeases(), clock=world.clock
    )
    replica_b = SyncEngine(
        world.app, world.connectors, interval=INTERVAL, leases=LocalLeases(), clock=world.clock
    )
    from_b: list[Any] = []
    interfering.before_next_save = lambda objs: from_b.append(
        scheduled(world, auto_import, replica_b)
    )

    from_a = scheduled(world, auto_import, replica_a)

    assert from_b[0].outcome == "COMPLETED"
    assert isinstance(from_a, NotStarted) and from_a.reason == NOT_DUE
    assert events_of(world, auto_import).count("SyncStarted") == 1


def test_a_scheduled_trigger_while_a_sync_runs_starts_nothing(engine_world: World):
    world = engine_world
    auto_import = new_import(world)
    world.source().fill(2)
    reading, release = threading.Event(), threading.Event()

    def hold(page: int) -> None:
        reading.set()
        release.wait(30)

    world.connectors.options["before_page"] = hold
    running: list[Any] = []
    person = threading.Thread(target=lambda: running.append(world.sync(auto_import)))
    person.start()
    try:
        reading.wait(30)
        reply = scheduled(world, auto_import)
    finally:
        release.set()
        person.join()

    assert isinstance(reply, NotStarted) and reply.reason == ALREADY_RUNNING
    assert reply.report is not None and reply.report.sync_id == running[0].sync_id
    assert events_of(world, auto_import).count("SyncStarted") == 1


# -- over gRPC: due imports and scheduled triggers ----------------------------------------------


@pytest.fixture(scope="module", params=STORES)
def due_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SyncWorld]:
    """A server whose interval no test waits for."""
    folder = tmp_path_factory.mktemp(request.param)
    sources = folder / "sources"
    sources.mkdir()
    env = {"AUTOIMPORT_TEST_SOURCES": str(sources), "AUTOIMPORT_SYNC_INTERVAL": str(LONG)}
    with (
        store_env(request.param, folder) as store,
        ServerProcess({**store, **env}, SCRIPTED) as server,
    ):
        world = SyncWorld(server, sources)
        yield world
        world.admin.channel.close()


def due_names(world: SyncWorld, due_before: datetime | None = None, page_size: int = 0) -> list:
    """Every due import's name, read page by page."""
    names, token = [], ""
    while True:
        request = pb.ListDueImportsRequest(page_size=page_size, page_token=token)
        if due_before is not None:
            request.due_before.CopyFrom(at(due_before))
        page = world.admin.imports.ListDueImports(request)
        names += [d.name for d in page.due_imports]
        token = page.next_page_token
        if not token:
            return names


def scheduled_sync(world: SyncWorld, auto_import: pb.AutoImport) -> pb.SyncReport:
    return world.admin.imports.TriggerSync(
        pb.TriggerSyncRequest(name=auto_import.name, scheduled=True, request_id=str(uuid.uuid4())),
        timeout=60,
    )


def test_due_imports_are_those_never_synced_then_one_interval_after_their_last_sync_began(
    due_world: SyncWorld,
):
    world = due_world
    account, other_account = world.account(), world.account()
    never = world.new_import(account, contacts_of(2))
    synced = world.new_import(other_account, contacts_of(2))
    report = world.sync(synced)
    began = time_of(report.start_time)
    interval = timedelta(seconds=LONG)

    now = due_names(world)
    just_before = due_names(world, began + interval - timedelta(microseconds=1))
    on_time = due_names(world, began + interval)
    due = world.admin.imports.ListDueImports(pb.ListDueImportsRequest())
    listed = {d.name: time_of(d.next_sync_time) for d in due.due_imports}

    assert never.name in now and synced.name not in now  # across accounts
    assert synced.name not in just_before and synced.name in on_time
    assert listed[never.name] == time_of(never.create_time)  # due since its creation
    fetched = world.admin.imports.GetImport(pb.GetImportRequest(name=synced.name))
    assert time_of(fetched.next_sync_time) == began + interval


def test_due_imports_come_in_pages_never_synced_first_then_the_most_overdue(
    due_world: SyncWorld,
):
    world = due_world
    account = world.account()
    imports = [world.new_import(account, contacts_of(1)) for _ in range(3)]
    for auto_import in imports[1:]:
        world.sync(auto_import)
    later = datetime.now(UTC) + timedelta(seconds=2 * LONG)

    whole = due_names(world, later)
    paged = due_names(world, later, page_size=1)
    ours = [name for name in paged if name in {i.name for i in imports}]

    assert paged == whole
    assert ours == [imports[0].name, imports[1].name, imports[2].name]
    first = world.admin.imports.ListDueImports(
        pb.ListDueImportsRequest(page_size=1, due_before=at(later))
    )
    moved = error_of(
        world.admin.imports.ListDueImports,
        pb.ListDueImportsRequest(
            page_size=1, page_token=first.next_page_token, due_before=at(later + timedelta(1))
        ),
    )
    assert moved.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_paused_deleted_and_disconnected_imports_are_never_due(due_world: SyncWorld):
    world = due_world
    account = world.account()
    paused = world.new_import(account, contacts_of(1))
    deleted = world.new_import(account, contacts_of(1))
    disconnected = world.new_import(account, contacts_of(1), revoked=True)
    world.admin.imports.PauseImport(pb.PauseImportRequest(name=paused.name))
    world.admin.imports.DeleteImport(pb.DeleteImportRequest(name=deleted.name))
    failed = world.sync(disconnected)
    state = world.admin.imports.GetImport(pb.GetImportRequest(name=disconnected.name)).state

    listed = due_names(world, datetime.now(UTC) + timedelta(days=365))
    replies = [scheduled_sync(world, i) for i in (paused, disconnected)]
    gone = error_of(scheduled_sync, world, deleted)

    assert failed.outcome == pb.SyncReport.FAILED and state == pb.AutoImport.NEEDS_REAUTH
    assert not {paused.name, deleted.name, disconnected.name} & set(listed)
    assert [r.not_started for r in replies] == [pb.SyncReport.NOT_DUE] * 2
    assert not any(r.HasField("next_sync_time") for r in replies)  # never due
    assert replies[1].sync_id == failed.sync_id  # the last sync's report
    assert gone.code() is grpc.StatusCode.NOT_FOUND
    world.admin.imports.ResumeImport(pb.ResumeImportRequest(name=paused.name))
    assert paused.name in due_names(world)


def test_a_scheduled_trigger_of_an_import_not_due_runs_nothing(due_world: SyncWorld):
    world = due_world
    auto_import = world.new_import(world.account(), contacts_of(3))

    first = scheduled_sync(world, auto_import)
    history = list(
        world.admin.imports.GetImportHistory(pb.GetImportHistoryRequest(name=auto_import.name))
    )
    again = scheduled_sync(world, auto_import)
    after = list(
        world.admin.imports.GetImportHistory(pb.GetImportHistoryRequest(name=auto_import.name))
    )
    by_a_person = world.sync(auto_import)

    assert first.outcome == pb.SyncReport.COMPLETED and first.added == 3
    assert not first.not_started
    assert [e.actor for e in history if e.type == "SyncStarted"] == ["scheduler"]
    assert again.not_started == pb.SyncReport.NOT_DUE
    assert again.sync_id == first.sync_id
    assert time_of(again.next_sync_time) == time_of(first.start_time) + timedelta(seconds=LONG)
    assert after == history  # nothing recorded, nothing run
    assert by_a_person.outcome == pb.SyncReport.COMPLETED  # a person's call still runs at once
    assert by_a_person.sync_id != first.sync_id


def test_a_scheduled_trigger_while_the_import_syncs_runs_nothing(due_world: SyncWorld):
    world = due_world
    contacts = contacts_of(3)
    auto_import = world.new_import(world.account(), contacts, hold_at_page=0)
    gate = world.sources / f"{auto_import.external_account}.held"
    running: list[pb.SyncReport] = []
    person = threading.Thread(target=lambda: running.append(world.sync(auto_import)))
    person.start()
    try:
        wait_for(gate.exists, bool)
        reply = scheduled_sync(world, auto_import)
    finally:
        write_source(world.sources, auto_import.external_account, contacts)
        person.join()

    assert reply.not_started == pb.SyncReport.ALREADY_RUNNING
    assert reply.outcome == pb.SyncReport.RUNNING and reply.sync_id == running[0].sync_id
    syncs = world.admin.imports.ListSyncs(pb.ListSyncsRequest(name=auto_import.name)).syncs
    assert [s.sync_id for s in syncs] == [running[0].sync_id]


def test_due_imports_and_scheduled_triggers_need_the_admin_token(due_world: SyncWorld):
    world = due_world
    account = world.account()
    auto_import = world.new_import(account, contacts_of(1))
    key = world.admin.accounts.CreateApiKey(apb.CreateApiKeyRequest(account_id=account)).key

    with world.server.client(key) as holder:
        listing = error_of(holder.imports.ListDueImports, pb.ListDueImportsRequest())
        trigger = error_of(
            holder.imports.TriggerSync,
            pb.TriggerSyncRequest(name=auto_import.name, scheduled=True),
        )

    assert listing.code() is trigger.code() is grpc.StatusCode.PERMISSION_DENIED


# -- `autoimport scheduler` processes ---------------------------------------------------------


class SchedulerProcess:
    """`autoimport scheduler` in a subprocess, pointed at a server."""

    def __init__(self, server: ServerProcess, **env: str):
        self.env = {
            **os.environ,
            "AUTOIMPORT_ADDRESS": server.address,
            "AUTOIMPORT_TOKEN": "",
            "AUTOIMPORT_ADMIN_TOKEN": server.admin_token,  # as the server's own fallback
            "AUTOIMPORT_SYNC_INTERVAL": server.env["AUTOIMPORT_SYNC_INTERVAL"],
            "AUTOIMPORT_METRICS_LISTEN": "127.0.0.1:0",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self) -> SchedulerProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "scheduler"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        wait_for(
            lambda: "".join(self.output),
            lambda out: (
                "autoimport scheduler:" in out
                or self.process is None
                or self.process.poll() is not None
            ),
        )
        assert self.process.poll() is None, "".join(self.output)
        return self

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=30)

    def __enter__(self) -> SchedulerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()


def periodic_server(
    store_vars: dict[str, str], sources: Path, interval: float, **env: str
) -> ServerProcess:
    return ServerProcess(
        {
            **store_vars,
            "AUTOIMPORT_TEST_SOURCES": str(sources),
            "AUTOIMPORT_SYNC_INTERVAL": str(interval),
            **env,
        },
        SCRIPTED,
    )


def sync_starts(world: SyncWorld, auto_import: pb.AutoImport) -> list[float]:
    """The start of every sync of the import (epoch seconds), oldest first."""
    syncs = world.admin.imports.ListSyncs(
        pb.ListSyncsRequest(name=auto_import.name, page_size=100)
    ).syncs
    return sorted(s.start_time.ToNanoseconds() / 1e9 for s in syncs)


def gaps(starts: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(starts)]


def synced_at_least(world: SyncWorld, imports: list[pb.AutoImport], n: int) -> bool:
    return all(len(sync_starts(world, i)) >= n for i in imports)


@pytest.mark.parametrize("store", STORES)
def test_two_schedulers_sync_every_import_once_per_interval(store: str, tmp_path: Path):
    interval = 1.5
    sources = tmp_path / "sources"
    sources.mkdir()
    with (
        store_env(store, tmp_path) as store_vars,
        periodic_server(store_vars, sources, interval) as server,
    ):
        world = SyncWorld(server, sources)
        account = world.account()
        imports = [world.new_import(account, contacts_of(3, prefix=f"i{n}-")) for n in range(20)]
        with SchedulerProcess(server), SchedulerProcess(server):
            wait_for(lambda: synced_at_least(world, imports, 3), bool, timeout=60)
        starts = {i.name: sync_starts(world, i) for i in imports}
        reports = world.admin.imports.ListSyncs(pb.ListSyncsRequest(name=imports[0].name)).syncs
        world.admin.channel.close()

    for name, times in starts.items():
        # Never twice in one interval. How soon after the interval each sync starts depends on
        # the machine's load; that each import goes on being synced is the wait above.
        assert all(gap >= interval for gap in gaps(times)), (name, gaps(times))
    assert all(r.outcome == pb.SyncReport.COMPLETED for r in reports)
    assert [r.added for r in reports][-1] == 3  # the first sync added them, later ones nothing


@pytest.mark.postgres
def test_two_schedulers_on_two_replicas_of_one_database_sync_each_import_once_per_interval(
    tmp_path: Path,
):
    interval = 2.0
    sources = tmp_path / "sources"
    sources.mkdir()
    with store_env("postgres", tmp_path) as store_vars:
        second = {**store_vars, "AUTOIMPORT_DATA_DIR": str(tmp_path / "second")}
        with (
            periodic_server(store_vars, sources, interval) as one,
            periodic_server(second, sources, interval) as two,
        ):
            world = SyncWorld(one, sources)
            accounts = [world.account() for _ in range(3)]
            imports = [
                world.new_import(accounts[n % 3], contacts_of(3, prefix=f"i{n}-"))
                for n in range(30)
            ]
            with SchedulerProcess(one), SchedulerProcess(two):
                wait_for(lambda: synced_at_least(world, imports, 3), bool, timeout=60)
            starts = {i.name: sync_starts(world, i) for i in imports}
            contacts = world.all_contacts(accounts[0])
            world.admin.channel.close()

    for name, times in starts.items():
        # Never twice in one interval. How soon after the interval each sync starts depends on
        # the machine's load; that each import goes on being synced is the wait above.
        assert all(gap >= interval for gap in gaps(times)), (name, gaps(times))
    assert len(contacts) == 10 * 3 == len({c.email for c in contacts})


@pytest.mark.parametrize("store", STORES)
def test_a_restarted_scheduler_catches_up_with_one_sync_per_import(store: str, tmp_path: Path):
    interval = 1.5
    outage = 2 * interval
    sources = tmp_path / "sources"
    sources.mkdir()
    with (
        store_env(store, tmp_path) as store_vars,
        periodic_server(store_vars, sources, interval) as server,
    ):
        world = SyncWorld(server, sources)
        account = world.account()
        imports = [world.new_import(account, contacts_of(2, prefix=f"i{n}-")) for n in range(5)]
        scheduler = SchedulerProcess(server).start()
        wait_for(lambda: synced_at_least(world, imports, 1), bool)
        scheduler.kill()  # SIGKILL: it keeps nothing, so it loses nothing
        killed_at = time.time()
        last = max(max(sync_starts(world, i)) for i in imports)
        wait_for(time.time, lambda now: now > last + outage)  # every import missed windows

        def synced_since_the_restart(n: int) -> bool:
            return all(
                len([s for s in sync_starts(world, i) if s > killed_at]) >= n for i in imports
            )

        with SchedulerProcess(server):
            restarted_at = time.time()
            wait_for(lambda: synced_since_the_restart(2), bool, timeout=60)
        starts = {i.name: sync_starts(world, i) for i in imports}
        world.admin.channel.close()

    for name, times in starts.items():
        before = [s for s in times if s < killed_at]
        caught_up, next_one = [s for s in times if s > killed_at][:2]
        assert caught_up - before[-1] > outage, name  # the outage: nothing ran
        assert caught_up - restarted_at < interval, name  # caught up at once after the restart
        assert next_one - caught_up >= interval, name  # once: not one sync per missed window


@pytest.mark.parametrize("store", STORES)
def test_the_api_answers_while_the_scheduler_holds_every_sync_it_may(store: str, tmp_path: Path):
    """More scheduled syncs in flight than the server has threads: the server runs
    AUTOIMPORT_MAX_SYNCS of them, refuses the others at once (RESOURCE_EXHAUSTED, retried in a
    later round), and keeps threads for every other call."""
    max_syncs, concurrency = 2, 24  # the server's pool: 16 + 2 threads, fewer than 24
    sources = tmp_path / "sources"
    sources.mkdir()
    with (
        store_env(store, tmp_path) as store_vars,
        periodic_server(store_vars, sources, LONG, AUTOIMPORT_MAX_SYNCS=str(max_syncs)) as server,
    ):
        world = SyncWorld(server, sources)
        account = world.account()
        contacts = contacts_of(2)
        imports = [world.new_import(account, contacts, hold_at_page=0) for _ in range(concurrency)]
        gates = [sources / f"{i.external_account}.held" for i in imports]
        with SchedulerProcess(
            server,
            AUTOIMPORT_SCHEDULER_CONCURRENCY=str(concurrency),
            AUTOIMPORT_SCHEDULER_POLL="0.2",
            AUTOIMPORT_SCHEDULER_JITTER="0",
        ) as scheduler:
            wait_for(lambda: sum(g.exists() for g in gates), lambda held: held == max_syncs)
            wait_for(
                lambda: "".join(scheduler.output).count("waits for a later round"),
                lambda refused: refused >= concurrency - max_syncs,
            )
            started = time.monotonic()
            fetched = world.admin.imports.GetImport(
                pb.GetImportRequest(name=imports[0].name), timeout=2
            )
            listed = world.contacts.ListContacts(
                cpb.ListContactsRequest(account_id=account), timeout=2
            )
            answered_in = time.monotonic() - started
            by_a_person = error_of(world.sync, imports[-1])
            held = sum(g.exists() for g in gates)
            for auto_import in imports:  # opens every gate
                write_source(sources, auto_import.external_account, contacts)
            wait_for(lambda: synced_at_least(world, imports, 1), bool, timeout=60)
        world.admin.channel.close()

    assert fetched.name == imports[0].name and listed.total_size >= 0
    assert answered_in < 2
    assert by_a_person.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "AUTOIMPORT_MAX_SYNCS" in by_a_person.details()
    assert held == max_syncs


def test_the_scheduler_refuses_a_deadline_as_long_as_the_interval(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "scheduler", "--sync-timeout", "60"],
        cwd=ROOT,
        env={**os.environ, "AUTOIMPORT_SYNC_INTERVAL": "60", "AUTOIMPORT_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert re.search(r"SYNC_TIMEOUT must be .* shorter than", result.stderr)

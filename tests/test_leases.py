"""Leases: one holder at a time; on PostgreSQL a holder that stops heartbeating (stopped, frozen,
cut off) loses its lease within the timeout, another process takes it, and the old holder learns
that it lost it. The projector's batches are fenced against a runner that lost its lease."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from domain.import_settings import ImportChanges
from service.application import AutoImports
from service.config import ConfigError, Settings, lease_timeout
from service.leases import (
    Lease,
    LeaseLost,
    LocalLeases,
    PostgresLease,
    PostgresLeases,
    advisory_lease,
    file_lease,
    lock_key,
)
from service.projector import Projector, catch_up, lease_name
from service.read_models.views import AccountViewsProjection
from service.stores import open_application
from tests.support import PG_URL, ROOT, wait_for
from tests.test_projector import make_imports, open_imports_view

TTL = 1.5  # seconds: short, so that the tests take seconds
SLACK = 2.0  # seconds beyond a bound that a loaded machine (2 shared CPUs) may take

# A process that holds lease "job" until it finds the lease lost, then says how it learnt it.
HOLDER = """
import sys, time
from service.leases import PostgresLeases
leases = PostgresLeases(sys.argv[1], sys.argv[2], ttl=float(sys.argv[3]))
with leases.hold("job") as lease:
    print("held" if lease else "refused", flush=True)
    while not lease.lost:
        time.sleep(0.01)
    try:
        leases.check("job")
    except Exception as e:
        print(f"lost: {type(e).__name__}: {e}", flush=True)
"""


@pytest.fixture
def leases() -> PostgresLeases:
    return PostgresLeases(PG_URL, f"test/{uuid.uuid4().hex}", ttl=TTL)


def try_to_take(leases: PostgresLeases, name: str) -> tuple[contextlib.ExitStack, Lease] | None:
    """Takes the lease and keeps holding it (close the stack to let go), or None if refused."""
    stack = contextlib.ExitStack()
    lease = stack.enter_context(leases.hold(name))
    if not lease:
        stack.close()
        return None
    return stack, lease


def holder_pid(namespaced_name: str) -> int | None:
    """The backend holding an advisory lock (lock_key of the name), from pg_locks."""
    with psycopg.connect(PG_URL) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND ((classid::bigint << 32) | objid::bigint) = %s",
            (lock_key(namespaced_name),),
        ).fetchone()
    return None if row is None else int(row[0])


@pytest.mark.postgres
def test_a_stopped_holder_loses_its_lease_within_the_timeout_and_learns_it_when_it_wakes(
    leases: PostgresLeases,
):
    namespace = leases._namespace
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, PG_URL, namespace, str(TTL)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        assert try_to_take(leases, "job") is None  # held elsewhere: refused

        holder.send_signal(signal.SIGSTOP)  # its kernel still answers TCP keepalives
        stopped = time.monotonic()
        taken = wait_for(
            lambda: try_to_take(leases, "job"), lambda t: t is not None, timeout=TTL + 30
        )
        taken_after = time.monotonic() - stopped
        assert taken is not None
        stack, lease = taken
        with stack:
            holder.send_signal(signal.SIGCONT)
            woke = holder.stdout.readline().strip()
            assert holder.wait(timeout=30) == 0
            assert not lease.lost
            lease.check()
            other = PostgresLeases(PG_URL, namespace, ttl=TTL)
            assert try_to_take(other, "job") is None  # the new holder still holds it
    finally:
        if holder.poll() is None:
            holder.send_signal(signal.SIGCONT)
            holder.kill()
            holder.wait()

    # Its last heartbeat was at most TTL/3 before it stopped; the server ended the session TTL
    # after it.
    assert TTL / 2 < taken_after < TTL + SLACK
    assert woke.startswith("lost: LeaseLost: lost the lease job: "), woke


@pytest.mark.postgres
def test_a_holder_whose_heartbeats_go_unanswered_loses_the_lease_and_learns_it(
    leases: PostgresLeases,
):
    with leases.hold("job") as lease:
        assert isinstance(lease, PostgresLease) and not lease.lost
        # Nothing can be sent on the session while its lock is held: a frozen or cut-off
        # session, as far as the heartbeat can tell.
        with lease.connection.lock:
            blocked = time.monotonic()
            wait_for(lambda: lease.lost, bool, timeout=TTL + 30)
            learnt_after = time.monotonic() - blocked
            with pytest.raises(LeaseLost, match="no heartbeat confirmed"):
                lease.check()
            with pytest.raises(LeaseLost):
                leases.check("job")
            other = PostgresLeases(PG_URL, leases._namespace, ttl=TTL)
            taken = wait_for(
                lambda: try_to_take(other, "job"), lambda t: t is not None, timeout=TTL + 30
            )
            taken_after = time.monotonic() - blocked
        assert taken is not None
        with taken[0]:
            assert not taken[1].lost
    # The holder learns it first: the server's idle clock started after the last heartbeat.
    assert learnt_after <= TTL + SLACK and learnt_after <= taken_after
    assert taken_after <= TTL + SLACK


@pytest.mark.postgres
def test_a_holder_whose_session_ends_learns_it_lost_the_lease(leases: PostgresLeases):
    with leases.hold("job") as lease:
        pid = holder_pid(f"{leases._namespace}/job")
        assert pid is not None
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

        wait_for(lambda: lease.lost, bool, timeout=TTL + 30)
        with pytest.raises(LeaseLost, match="its database session ended"):
            leases.check("job")
        taken = try_to_take(PostgresLeases(PG_URL, leases._namespace, ttl=TTL), "job")
        assert taken is not None
        taken[0].close()


@pytest.mark.postgres
def test_a_live_holder_keeps_its_lease_well_past_the_timeout(leases: PostgresLeases):
    other = PostgresLeases(PG_URL, leases._namespace, ttl=TTL)
    with leases.hold("job") as lease:
        assert lease
        until = time.monotonic() + 3 * TTL
        while time.monotonic() < until:  # a duration to hold, not a wait for something
            assert try_to_take(other, "job") is None
            assert not lease.lost
            leases.check("job")
            time.sleep(0.1)
    assert holder_pid(f"{leases._namespace}/job") is None  # released at the end of the block
    with pytest.raises(LeaseLost, match="not held"):
        leases.check("job")


@pytest.mark.postgres
def test_a_waiting_lease_takes_over_from_a_holder_that_stopped_heartbeating():
    name = f"test/{uuid.uuid4().hex}/projector"
    stopping = threading.Event()
    taken = threading.Event()
    waiter_lost: list[bool] = []

    def wait_for_the_lease() -> None:
        with advisory_lease(PG_URL, name, stopping, retry=0.1, ttl=TTL) as lease:
            if lease:
                taken.set()
                stopping.wait()
                waiter_lost.append(lease.lost)

    with advisory_lease(PG_URL, name, threading.Event(), retry=0.1, ttl=TTL) as first:
        assert isinstance(first, PostgresLease)
        waiter = threading.Thread(target=wait_for_the_lease)
        waiter.start()
        try:
            # The waiter's session outlives TTL while it waits: its tries keep it busy.
            assert not taken.wait(2 * TTL)
            with first.connection.lock:  # the first holder's heartbeat can no longer be sent
                blocked = time.monotonic()
                assert taken.wait(TTL + 30)
                taken_after = time.monotonic() - blocked
                assert first.lost
        finally:
            stopping.set()
            waiter.join()
    assert taken_after <= TTL + SLACK
    assert waiter_lost == [False]


@pytest.mark.postgres
@pytest.mark.parametrize("store_env", ["postgres"], indirect=True)
def test_a_projector_that_loses_its_lease_ends_its_run_and_takes_the_lease_again(
    store_env: dict[str, str], caplog: pytest.LogCaptureFixture
):
    settings = Settings.from_env({**store_env, "AUTOIMPORT_LEASE_TIMEOUT": str(TTL)})
    name = lease_name(settings, AccountViewsProjection)
    projector = Projector(settings)
    projector.start()
    try:
        first = wait_for(lambda: holder_pid(name), lambda pid: pid is not None)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (first,))
        wait_for(lambda: holder_pid(name), lambda pid: pid not in (None, first))
    finally:
        projector.stop()
    assert projector.errors == []  # a lost lease ends the run; it is not a crash
    assert f"projection {AccountViewsProjection.name} stopped: lost the lease" in caplog.text


@pytest.fixture
def app(store_env: dict[str, str]) -> Iterator[AutoImports]:
    application = open_application(Settings.from_env(store_env))
    yield application
    application.close()


@pytest.mark.postgres
@pytest.mark.parametrize("store_env", ["postgres"], indirect=True)
def test_a_batch_that_began_before_another_runner_moved_the_view_is_refused(
    app: AutoImports, store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    """A runner (the new one) reads its batch from the view's position; meanwhile a runner that
    lost its lease (the woken old one) commits a shorter batch from that same position. The new
    runner's batch would apply those events a second time: it must be refused whole."""
    settings = Settings.from_env(store_env)
    created = make_imports(app, 1)[0]
    old = AccountViewsProjection(view=open_imports_view(settings))
    new = AccountViewsProjection(view=open_imports_view(settings))
    catch_up(app, old)
    position = app.recorder.max_notification_id() or 0
    for n in range(6):  # assignments only: applying them twice would raise no error by itself
        app.update_import("acme", created.id, ImportChanges(tags=[f"t{n}"]), etag="", actor="a")
    select = app.recorder.select_notifications
    calls: list[Any] = []

    def old_commits_after_new_read(*args: Any, **kwargs: Any) -> Any:
        notifications = select(*args, **kwargs)
        if not calls:  # the new runner's read: now the old one commits 3 of the 6 events
            calls.append(notifications)
            assert catch_up(app, old, until=position + 3) == 3
        return notifications

    monkeypatch.setattr(app.recorder, "select_notifications", old_commits_after_new_read)
    with pytest.raises(LeaseLost, match="another runner applied events meanwhile"):
        catch_up(app, new)
    monkeypatch.undo()

    assert len(calls[0]) == 6
    assert new.view.max_tracking_id(app.name) == position + 3  # the refused batch left nothing
    assert catch_up(app, new) == 3  # the next batch continues from where the view is
    rows = new.view.list_imports("acme", "", 10, "").rows
    assert [(r.tags, r.version) for r in rows] == [(["t5"], 7)]
    old.view.datastore.close()
    new.view.datastore.close()


def test_leases_within_one_process_allow_one_holder_and_are_never_lost(tmp_path: Path):
    leases = LocalLeases()
    with leases.hold("job") as lease, leases.hold("job") as second:
        assert lease and not lease.lost and not second
        leases.check("job")
        lease.check()
        with pytest.raises(LeaseLost):
            second.check()
    stopping = threading.Event()
    with file_lease(tmp_path / "v.lock", stopping, retry=0.01) as held:
        assert held and not held.lost
        stopping.set()
        with file_lease(tmp_path / "v.lock", stopping, retry=0.01) as waiting:
            assert not waiting


def test_the_lease_timeout_is_a_setting():
    assert lease_timeout({}) == 10.0
    assert lease_timeout({"AUTOIMPORT_LEASE_TIMEOUT": "2.5"}) == 2.5
    for wrong in ("soon", "0.1"):
        with pytest.raises(ConfigError, match="AUTOIMPORT_LEASE_TIMEOUT"):
            lease_timeout({"AUTOIMPORT_LEASE_TIMEOUT": wrong})

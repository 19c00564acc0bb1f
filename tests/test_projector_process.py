"""The server's projector as a child process (AUTOIMPORT_RUN_PROJECTIONS=process, the default):
restarted when it dies, gone when the server dies, its health the server's. Real processes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from autoimport.v1 import imports_pb2 as pb
from service.config import Settings
from service.projector_process import ProjectorProcess
from service.replay import verify
from service.server import PROJECTOR_HEALTH
from tests.conftest import STORES
from tests.support import (
    PG_URL,
    ServerProcess,
    parent_of,
    projector_pid,
    running,
    wait_for,
)
from tests.test_api_csv import chunked, upload
from tests.test_api_imports import create, error_of
from tests.test_processes import set_up_account

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def projector_health(server: ServerProcess) -> Iterator[int]:
    """Every status of the server's projector health, as the server sends them (gRPC Watch:
    the current one first, then each change)."""
    with server.channel() as channel:
        request = health_pb2.HealthCheckRequest(service=PROJECTOR_HEALTH)
        for response in health_pb2_grpc.HealthStub(channel).Watch(request, timeout=120):
            yield response.status


def next_status(statuses: Iterator[int], wanted: int) -> None:
    for status in statuses:
        if status == wanted:
            return
    raise AssertionError(f"the health stream ended before {wanted}")


def csv_of(count: int, prefix: str) -> bytes:
    lines = [f"{prefix}{n:05d}@example.com,Name {n}" for n in range(count)]
    return ("email,first name\n" + "\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_the_default_server_projects_in_a_child_process_that_logs_with_it(
    store_env: dict[str, str],
):
    with ServerProcess(store_env) as server, server.client(server.admin_token) as admin:
        assert server.process is not None
        child = projector_pid(server)
        assert parent_of(child) == server.process.pid
        set_up_account(admin)
        created = create(admin, "acme")
        listed = admin.imports.ListImports(pb.ListImportsRequest(account_id="acme"))
        assert [i.name for i in listed.auto_imports] == [created.name]
        assert server.terminate() == 0
    assert not running(child)
    # The child's log lines are in the server's log, in its format (JSON, not a terminal).
    logged = [json.loads(line) for line in server.output if line.startswith("{")]
    assert any(
        line["logger"] == "service.projector" and line["message"] == "projecting account_views_v2"
        for line in logged
    )


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_killed_projector_process_is_restarted_and_applies_what_was_saved_meanwhile_once(
    store_env: dict[str, str],
):
    with ServerProcess(store_env) as server, server.client(server.admin_token) as admin:
        set_up_account(admin)
        statuses = projector_health(server)
        next_status(statuses, SERVING)
        first = projector_pid(server)
        # The child is likely in the middle of these events' batches when it dies.
        upload(admin, "acme", chunked(csv_of(3000, "before"), 64 * 1024))
        os.kill(first, signal.SIGKILL)

        next_status(statuses, NOT_SERVING)  # the server saw it exit
        upload(admin, "acme", chunked(csv_of(500, "while"), 64 * 1024))
        created = create(admin, "acme")
        next_status(statuses, SERVING)  # a new child runs

        listed = admin.imports.ListImports(pb.ListImportsRequest(account_id="acme"))
        assert [i.name for i in listed.auto_imports] == [created.name]
        second = wait_for(lambda: projector_pid(server), lambda pid: pid != first)
        assert server.process is not None and parent_of(second) == server.process.pid
        out = io.StringIO()
        assert verify(Settings.from_env(server.env), out) == 0, out.getvalue()
    assert f"projector process (pid {first}) exited (killed by SIGKILL)" in "".join(server.output)


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_server_killed_by_sigkill_leaves_no_projector_behind(store_env: dict[str, str]):
    server = ServerProcess(store_env).start()
    child = projector_pid(server)
    server.kill()

    wait_for(lambda: running(child), lambda alive: not alive)  # its stdin ended
    # Nothing holds the projector's lease: a new server's projector takes it.
    with ServerProcess(store_env) as again, again.client(again.admin_token) as admin:
        set_up_account(admin)
        created = create(admin, "acme")
        listed = admin.imports.ListImports(pb.ListImportsRequest(account_id="acme"))
        assert [i.name for i in listed.auto_imports] == [created.name]


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_projection_stuck_in_the_child_shows_in_the_servers_health_and_answers(
    store_env: dict[str, str],
):
    with ServerProcess(store_env) as server, server.client(server.admin_token) as admin:
        set_up_account(admin)
        create(admin, "acme")
        statuses = projector_health(server)
        next_status(statuses, SERVING)
        with undecodable_event(server.env):
            next_status(statuses, NOT_SERVING)
            refused = error_of(
                admin.imports.ListImports, pb.ListImportsRequest(account_id="acme"), timeout=60
            )
            assert refused.code() is grpc.StatusCode.UNAVAILABLE
            assert "its projection fails on an event" in (refused.details() or "")
        next_status(statuses, SERVING)
        created = create(admin, "acme")
        listed = admin.imports.ListImports(pb.ListImportsRequest(account_id="acme"))
        assert created.name in [i.name for i in listed.auto_imports]
    assert "cannot apply events" in "".join(server.output)


@contextlib.contextmanager
def undecodable_event(env: dict[str, str]) -> Iterator[None]:
    """A stored event that nothing can decode, inserted straight into the events table of the
    store of `env`, and removed again on exit."""
    originator = uuid.uuid4()
    row = (originator, "domain.auto_import:AutoImport.Created", b"\x00not an event")
    if env.get("AUTOIMPORT_DATABASE_URL"):
        table = f"{env['AUTOIMPORT_DATABASE_SCHEMA']}.autoimports_events"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {table} (originator_id, originator_version, topic, state)"
                " VALUES (%s, 1, %s, %s)",
                row,
            )
            yield
            conn.execute(f"DELETE FROM {table} WHERE originator_id = %s", (originator,))
        return
    with contextlib.closing(
        sqlite3.connect(Path(env["AUTOIMPORT_DATA_DIR"]) / "events.sqlite")
    ) as db:
        with db:
            db.execute("INSERT INTO stored_events VALUES (?, 1, ?, ?)", (str(originator), *row[1:]))
        yield
        with db:
            db.execute("DELETE FROM stored_events WHERE originator_id = ?", (str(originator),))


def test_a_child_that_reads_no_wake_up_never_blocks_a_save(store_env: dict[str, str]):
    """Nudges are written without blocking: with the child stopped (SIGSTOP) and its pipe full,
    a save's nudge still returns at once."""
    projector = ProjectorProcess(Settings.from_env(store_env))
    projector.start()
    try:
        pid = projector.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        nudging = threading.Thread(target=lambda: [projector.nudge() for _ in range(200_000)])
        nudging.start()
        nudging.join(timeout=60)
        assert not nudging.is_alive()  # more nudges than the pipe holds: it would block else
        os.kill(pid, signal.SIGCONT)
    finally:
        projector.stop()
    assert not running(pid)

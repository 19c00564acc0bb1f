"""What holds across processes: restarts, secrets at rest, graceful stop, replicas on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from autoimport.v1 import accounts_pb2 as apb
from autoimport.v1 import imports_pb2 as pb
from service.config import Settings
from service.leases import lock_key
from service.projector import lease_name
from service.read_models.views import AccountViewsProjection
from tests.conftest import STORES
from tests.scripted_server import write_source
from tests.support import (
    PG_URL,
    ROOT,
    Client,
    ServerProcess,
    projector_pid,
    self_signed_certificate,
    wait_for,
)
from tests.support import store_env as store_env_of
from tests.test_api_imports import SECRET, create, error_of, shopify_import
from tests.test_api_sync import SCRIPTED, SyncWorld, contacts_of

REFRESH_SECRET = "1//refresh_TOPSECRET_9e107d9d372bb"


def set_up_account(client: Client, account_id: str = "acme") -> str:
    client.accounts.UpsertAccount(
        apb.UpsertAccountRequest(
            account=apb.Account(account_id=account_id, plan="lite", contact_limit=100)
        )
    )
    return client.accounts.CreateApiKey(apb.CreateApiKeyRequest(account_id=account_id)).key


def stored_bytes(env: dict[str, str]) -> bytes:
    """Everything the service stored: the data directory's files, and on PostgreSQL every row of
    every table in its schema."""
    data = b"".join(
        p.read_bytes() for p in Path(env["AUTOIMPORT_DATA_DIR"]).rglob("*") if p.is_file()
    )
    if "AUTOIMPORT_DATABASE_SCHEMA" in env:
        schema = env["AUTOIMPORT_DATABASE_SCHEMA"]
        with psycopg.connect(PG_URL) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).fetchall()
            assert len(tables) >= 4
            for (table,) in tables:
                for row in conn.execute(f'SELECT t::text FROM {schema}."{table}" t'):
                    data += row[0].encode()
    return data


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_everything_survives_a_restart_on_the_same_store(store_env: dict[str, str]):
    with ServerProcess(store_env) as first, first.client(first.admin_token) as admin:
        key = set_up_account(admin)
        with first.client(key) as client:
            kept = create(client, "acme")
            paused = create(client, "acme")
            client.imports.PauseImport(pb.PauseImportRequest(name=paused.name))
            deleted = create(client, "acme")
            client.imports.DeleteImport(pb.DeleteImportRequest(name=deleted.name))
            before = client.imports.ListImports(pb.ListImportsRequest(account_id="acme"))

    with ServerProcess(store_env) as second, second.client(key) as client:
        after = client.imports.ListImports(pb.ListImportsRequest(account_id="acme"))
        assert after == before
        assert [i.name for i in after.auto_imports] == [kept.name, paused.name]
        assert (
            client.imports.GetImport(pb.GetImportRequest(name=paused.name)).state
            == pb.AutoImport.PAUSED
        )
        history = list(
            client.imports.GetImportHistory(pb.GetImportHistoryRequest(name=deleted.name))
        )
        assert [e.type for e in history] == ["Created", "Deleted"]
        assert (
            client.accounts.GetAccount(apb.GetAccountRequest(account_id="acme")).contact_limit
            == 100
        )


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_credentials_are_never_stored_in_plain_text(store_env: dict[str, str]):
    with ServerProcess(store_env) as server, server.client(server.admin_token) as admin:
        key = set_up_account(admin)
        google = pb.AutoImport(
            service="google_contacts",
            external_account="owner@example.com",
            credentials=pb.Credentials(access_token=SECRET, refresh_token=REFRESH_SECRET),
        )
        created = create(admin, "acme", google)
        admin.imports.UpdateImport(
            pb.UpdateImportRequest(
                auto_import=pb.AutoImport(
                    name=created.name,
                    credentials=pb.Credentials(
                        access_token=SECRET + "2", refresh_token=REFRESH_SECRET + "2"
                    ),
                )
            )
        )
        admin.imports.ListImports(pb.ListImportsRequest(account_id="acme"))  # read model caught up
        log = "".join(server.output)

    stored = stored_bytes(store_env)
    for secret in (SECRET, REFRESH_SECRET, key):
        assert secret.encode() not in stored
        assert secret.encode().hex().encode() not in stored
        assert secret not in log


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_sigterm_lets_a_call_in_flight_finish_and_refuses_new_ones(store_env: dict[str, str]):
    with (
        ServerProcess(store_env) as server,
        server.client(server.admin_token) as admin,
    ):
        set_up_account(admin)
        created = create(admin, "acme")
        updates = 600  # a history long enough to exceed the stream's flow-control window
        for i in range(updates):
            admin.imports.UpdateImport(
                pb.UpdateImportRequest(auto_import=pb.AutoImport(name=created.name, tags=[f"t{i}"]))
            )
        stream = admin.imports.GetImportHistory(pb.GetImportHistoryRequest(name=created.name))
        first = next(stream)  # the server is now blocked mid-stream, waiting for us to read

        assert server.process is not None
        server.process.send_signal(15)
        refused = _first_refusal(server)
        rest = list(stream)

        assert server.process.wait(timeout=30) == 0
    assert refused in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert [first.version] + [e.version for e in rest] == list(range(1, updates + 2))


def _update_at_the_same_time(
    clients: list[Client], name: str, etag: str, round_number: int
) -> list[object]:
    """Each client sends UpdateImport with the same etag at the same moment; returns what each
    got back: the import, or the status code of its error."""
    start = threading.Barrier(len(clients))

    def update(client: Client, tag: str) -> object:
        start.wait()
        change = pb.AutoImport(name=name, etag=etag, tags=[tag])
        try:
            return client.imports.UpdateImport(pb.UpdateImportRequest(auto_import=change))
        except grpc.RpcError as e:
            return e.code()

    tags = [f"client{i}-round{round_number}" for i in range(len(clients))]
    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(update, clients, tags))


def _first_refusal(server: ServerProcess) -> grpc.StatusCode:
    """Calls the stopping server until it refuses a new call (the signal takes a moment)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with Client(server.address, server.admin_token) as late:
            try:
                late.imports.ListImports(pb.ListImportsRequest(account_id="acme"), timeout=2)
            except grpc.RpcError as e:
                return e.code()
        time.sleep(0.01)
    raise AssertionError("the server kept accepting new calls after SIGTERM")


@pytest.mark.postgres
@pytest.mark.parametrize("store_env", ["postgres"], indirect=True)
def test_two_replicas_on_one_database_let_exactly_one_of_two_concurrent_updates_win(
    store_env: dict[str, str], tmp_path: Path
):
    with (
        ServerProcess(store_env) as one,
        ServerProcess({**store_env, "AUTOIMPORT_DATA_DIR": str(tmp_path / "2")}) as two,
    ):
        with one.client(one.admin_token) as admin:
            key = set_up_account(admin)
            created = create(admin, "acme")
        with one.client(key) as a, two.client(key) as b:
            etag = created.etag
            for round_number in range(10):
                outcomes = _update_at_the_same_time([a, b], created.name, etag, round_number)

                winners = [o for o in outcomes if isinstance(o, pb.AutoImport)]
                assert len(winners) == 1, outcomes
                assert grpc.StatusCode.ABORTED in outcomes
                current = b.imports.GetImport(pb.GetImportRequest(name=created.name))
                assert current == winners[0]
                etag = current.etag
            # Both replicas serve the same read model (one of them projects it).
            listed_a = a.imports.ListImports(pb.ListImportsRequest(account_id="acme"))
            listed_b = b.imports.ListImports(pb.ListImportsRequest(account_id="acme"))
            assert listed_a == listed_b and listed_a.auto_imports[0].etag == etag


@pytest.mark.postgres
@pytest.mark.parametrize("projections", ["process", "thread"])
@pytest.mark.parametrize("store_env", ["postgres"], indirect=True)
def test_when_the_projecting_replica_dies_another_takes_over(
    store_env: dict[str, str], tmp_path: Path, projections: str
):
    store_env = {**store_env, "AUTOIMPORT_RUN_PROJECTIONS": projections}

    def projector_of(server: ServerProcess) -> int:
        assert server.process is not None
        return projector_pid(server) if projections == "process" else server.process.pid

    one = ServerProcess(store_env).start()
    try:
        # The replica about to die is the one projecting: it holds the lease before two starts.
        wait_for(lambda: projector_lease_holder(store_env), _of_process(projector_of(one)))
        with ServerProcess({**store_env, "AUTOIMPORT_DATA_DIR": str(tmp_path / "2")}) as two:
            with one.client(one.admin_token) as admin:
                set_up_account(admin)
                create(admin, "acme")
            # SIGKILL: its advisory lock goes with its database session (a projector process
            # sees its stdin end, and exits)
            one.kill()
            wait_for(lambda: projector_lease_holder(store_env), _of_process(projector_of(two)))
            with two.client(two.admin_token) as admin:
                created = create(admin, "acme")
                listed = admin.imports.ListImports(pb.ListImportsRequest(account_id="acme"))
            assert created.name in [i.name for i in listed.auto_imports]
            assert len(listed.auto_imports) == 2
    finally:
        if one.process and one.process.poll() is None:
            one.kill()


def projector_lease_holder(env: dict[str, str]) -> str | None:
    """Who holds the view's projector lease: the application_name of the session holding its
    advisory lock (service/leases.py names lease sessions after their process)."""
    settings = Settings.from_env({**env, "AUTOIMPORT_ADMIN_TOKEN": "unused"})
    key = lock_key(lease_name(settings, AccountViewsProjection))
    with psycopg.connect(PG_URL) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
            (key,),
        ).fetchone()
    return None if row is None else str(row[0])


def _of_process(pid: int):  # type: ignore[no-untyped-def]
    return lambda holder: holder is not None and holder.startswith(f"autoimport lease pid {pid} ")


@pytest.mark.postgres
def test_two_replicas_triggering_one_import_at_the_same_moment_run_one_sync(tmp_path: Path):
    """The import's sync lease, contended across processes: the replica that does not get it
    returns the running sync, whose id both callers get."""
    sources = tmp_path / "sources"
    sources.mkdir()
    with store_env_of("postgres", tmp_path) as env:
        env = {**env, "AUTOIMPORT_TEST_SOURCES": str(sources)}
        second_env = {**env, "AUTOIMPORT_DATA_DIR": str(tmp_path / "second")}
        with ServerProcess(env, SCRIPTED) as one, ServerProcess(second_env, SCRIPTED) as two:
            assert one.process is not None
            worlds = {one: SyncWorld(one, sources), two: SyncWorld(two, sources)}
            account = worlds[one].account()
            contacts = contacts_of(120)
            auto_import = worlds[one].new_import(account, contacts, page_size=40, hold_at_page=1)
            gate = sources / f"{auto_import.external_account}.held"
            start = threading.Barrier(2)

            def trigger(world: SyncWorld) -> pb.SyncReport:
                start.wait()
                return world.sync(auto_import)

            with ThreadPoolExecutor(2) as pool:
                calls = {server: pool.submit(trigger, world) for server, world in worlds.items()}
                # The sync that won the lease waits at the gate, on its second page; the other
                # call returns meanwhile.
                wait_for(gate.exists, bool, timeout=60)
                winner = one if gate.read_text() == str(one.process.pid) else two
                loser = two if winner is one else one
                early = calls[loser].result(timeout=60)
                write_source(sources, auto_import.external_account, contacts, page_size=40)
                done = calls[winner].result(timeout=120)
            listed = worlds[two].admin.imports.ListSyncs(pb.ListSyncsRequest(name=auto_import.name))
            for world in worlds.values():
                world.admin.channel.close()

    assert early.outcome == pb.SyncReport.RUNNING and done.outcome == pb.SyncReport.COMPLETED
    assert early.sync_id == done.sync_id
    assert [s.sync_id for s in listed.syncs] == [done.sync_id] and done.added == 120


@pytest.mark.parametrize("projections", ["process", "thread"])
@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_create_followed_at_once_by_list_shows_the_import(
    store_env: dict[str, str], projections: str
):
    """Read-your-writes, many times over, with the server's projector in a child process (the
    default, woken by each save) or in a thread of the server."""
    if projections != "process":
        store_env = {**store_env, "AUTOIMPORT_RUN_PROJECTIONS": projections}
    with (
        ServerProcess(store_env) as server,
        server.client(server.admin_token) as admin,
    ):
        set_up_account(admin)
        for n in range(1, 31):
            create(admin, "acme", shopify_import(display_name=f"import {n}"))
            listed = admin.imports.ListImports(
                pb.ListImportsRequest(account_id="acme", page_size=100)
            )
            assert len(listed.auto_imports) == n


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_server_with_another_cipher_key_refuses_to_start(
    store_env: dict[str, str], tmp_path: Path
):
    with ServerProcess(store_env) as server, server.client(server.admin_token) as admin:
        set_up_account(admin)
    from eventsourcing.cryptography import AESCipher

    wrong = {**store_env, "AUTOIMPORT_CIPHER_KEY": AESCipher.create_key(num_bytes=32)}

    with pytest.raises(RuntimeError, match="written with another cipher key"):
        ServerProcess(wrong).start()


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_separate_projector_process_keeps_the_read_model_for_servers_without_one(
    store_env: dict[str, str],
):
    projector = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "projector"],
        cwd=ROOT,
        env={**os.environ, **store_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        env = {**store_env, "AUTOIMPORT_RUN_PROJECTIONS": "no"}
        with ServerProcess(env) as server, server.client(server.admin_token) as admin:
            set_up_account(admin)
            created = create(admin, "acme")
            listed = admin.imports.ListImports(pb.ListImportsRequest(account_id="acme"))
            assert [i.name for i in listed.auto_imports] == [created.name]
    finally:
        projector.send_signal(signal.SIGTERM)
        assert projector.wait(timeout=30) == 0


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_tls_serves_clients_that_trust_the_certificate(store_env: dict[str, str], tmp_path: Path):
    cert, key = self_signed_certificate(tmp_path)
    env = {
        **store_env,
        "AUTOIMPORT_TLS_CERT": str(cert),
        "AUTOIMPORT_TLS_KEY": str(key),
    }
    with ServerProcess(env) as server:  # its start-up check already went through TLS
        with server.channel() as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        with grpc.insecure_channel(server.address) as plaintext:
            refused = error_of(
                health_pb2_grpc.HealthStub(plaintext).Check,
                health_pb2.HealthCheckRequest(),
                timeout=3,
            )
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert refused.code() is grpc.StatusCode.UNAVAILABLE

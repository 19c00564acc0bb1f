"""The gRPC server: API services, health, reflection, interceptors, projections, graceful stop."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import connectors
from autoimport.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    contacts_pb2,
    contacts_pb2_grpc,
    fields_pb2,
    fields_pb2_grpc,
    imports_pb2,
    imports_pb2_grpc,
)
from connectors.base import ConnectorFactory
from service import metrics
from service.api.accounts import AccountServicer
from service.api.contacts import ContactServicer, FieldServicer
from service.api.imports import AutoImportServicer
from service.api.interceptors import (
    AuthInterceptor,
    DecodingInterceptor,
    ErrorInterceptor,
    MetricsInterceptor,
)
from service.application import AutoImports
from service.config import RunProjections, Settings
from service.leases import Leases, LocalLeases, PostgresLeases
from service.logs import log_sync
from service.preview import Previewer
from service.projector import Projector
from service.projector_process import ProjectorProcess
from service.read_models import ReadModels
from service.read_models.views import AccountViewsProjection
from service.stores import open_application
from service.sync import SyncEngine

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    imports_pb2.DESCRIPTOR.services_by_name["AutoImportService"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    contacts_pb2.DESCRIPTOR.services_by_name["ContactService"].full_name,
    fields_pb2.DESCRIPTOR.services_by_name["FieldService"].full_name,
)
# Health of this server's projector (its thread or its child process): NOT_SERVING while the
# read model cannot advance.
PROJECTOR_HEALTH = "autoimport.projector"
GRACE_SECONDS = 10.0
WORKERS_JOIN_SECONDS = 2.0  # after the grace period: how long cancelled calls' threads may take
# Threads for calls other than syncs; the pool has AUTOIMPORT_MAX_SYNCS more, and TriggerSync
# answers RESOURCE_EXHAUSTED past that many syncs, so that syncs never starve the API.
WORKERS = 16


@dataclass
class Server:
    grpc_server: grpc.Server
    health: health.HealthServicer
    app: AutoImports
    read_models: ReadModels
    projector: Projector | ProjectorProcess | None
    address: str
    workers: futures.ThreadPoolExecutor  # the calls' threads

    def stop(self, grace: float = GRACE_SECONDS) -> bool:
        """New calls are refused at once (health says NOT_SERVING); calls in flight get `grace`
        seconds to finish, then are cancelled; then the stores close. False when a cancelled
        call's thread still runs (blocked on a service that never answers, say): it would
        hold the process until it ends."""
        self.health.enter_graceful_shutdown()
        self.grpc_server.stop(grace).wait()
        ended = threading.Thread(target=self.workers.shutdown, daemon=True)
        ended.start()
        ended.join(timeout=WORKERS_JOIN_SECONDS)
        if self.projector is not None:
            self.projector.stop()
        self.read_models.close()
        self.app.close()
        return not ended.is_alive()


def build_server(settings: Settings, connector_for: ConnectorFactory | None = None) -> Server:
    """A server whose syncs read the real services, or what `connector_for` gives (tests)."""
    app = open_application(settings)
    health_servicer = health.HealthServicer()
    on_health = _projector_health(health_servicer)
    projector: Projector | ProjectorProcess | None = None
    if settings.run_projections is RunProjections.PROCESS:
        projector = ProjectorProcess(settings, on_health=on_health)
    elif settings.run_projections is RunProjections.THREAD:
        projector = Projector(settings, app, on_health=on_health)
    # Creates the views' tables, so before the projector starts.
    read_models = ReadModels(
        app, settings.store_env, explain=lambda: _stuck(projector), secret=settings.cipher_key
    )

    workers = futures.ThreadPoolExecutor(
        max_workers=WORKERS + settings.max_syncs, thread_name_prefix="rpc"
    )
    server = grpc.server(
        workers,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
        ],
        interceptors=[
            MetricsInterceptor(),  # first: it sees the status code the others give
            ErrorInterceptor(),
            AuthInterceptor(
                settings.admin_token, app.identify_api_key, settings.previous_admin_tokens
            ),
            DecodingInterceptor(),  # last: a caller is authenticated before its request is read
        ],
    )
    connector_for = connector_for or connectors.factory(settings.connectors)
    engine = SyncEngine(
        app,
        connector_for,
        interval=settings.sync_interval,
        leases=sync_leases(settings),
        listeners=(log_sync, metrics.count_sync),  # one log line and the metrics of each sync
    )
    metrics.watch_server(app, read_models.views, AccountViewsProjection.name)
    imports_pb2_grpc.add_AutoImportServiceServicer_to_server(
        AutoImportServicer(
            app,
            read_models,
            engine,
            settings.sync_interval,
            Previewer(app, connector_for, interval=settings.sync_interval),
            max_syncs=settings.max_syncs,
        ),
        server,
    )
    accounts_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(app), server)
    contacts_pb2_grpc.add_ContactServiceServicer_to_server(
        ContactServicer(app, read_models), server
    )
    fields_pb2_grpc.add_FieldServiceServicer_to_server(FieldServicer(read_models), server)

    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if projector is not None:  # before it starts: it may report a failure at once
        health_servicer.set(PROJECTOR_HEALTH, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )

    port = _add_port(server, settings)
    host = settings.listen.rpartition(":")[0]
    if projector is not None:  # once nothing can fail: a child would outlive a failed start
        app.on_saved(projector.nudge)
        projector.start()
    server.start()
    return Server(server, health_servicer, app, read_models, projector, f"{host}:{port}", workers)


def _stuck(projector: Projector | ProjectorProcess | None) -> str | None:
    # The failure itself (which may quote any account's data) is for the log, not for callers.
    if projector is None or projector.failure is None:
        return None
    if isinstance(projector, ProjectorProcess) and projector.restarting:
        return "its projector process exited and is restarting: the server log says why"
    return "its projection fails on an event: the server log says which and why"


def _projector_health(health_servicer: health.HealthServicer) -> Callable[[str | None], None]:
    """The projector's failures as the health of PROJECTOR_HEALTH: NOT_SERVING while the read
    model cannot advance (reads answer UNAVAILABLE meanwhile), SERVING again once it does."""

    def report(failure: str | None) -> None:
        status = health_pb2.HealthCheckResponse
        health_servicer.set(PROJECTOR_HEALTH, status.NOT_SERVING if failure else status.SERVING)

    return report


def sync_leases(settings: Settings) -> Leases:
    if settings.uses_postgres:
        return PostgresLeases(
            settings.database_url,
            f"autoimport/{settings.database_schema}",
            ttl=settings.lease_timeout,
        )
    return LocalLeases()  # SQLite: this is the only process


def _add_port(server: grpc.Server, settings: Settings) -> int:
    if not settings.tls_cert:
        port = server.add_insecure_port(settings.listen)
    else:
        client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
        credentials = grpc.ssl_server_credentials(
            [(Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )
        port = server.add_secure_port(settings.listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    return port


def wait_for_signal(stopping: threading.Event) -> None:
    """Waits in short steps: the kernel may deliver a signal to any thread, and Python runs its
    handler only when the main thread next runs Python code, which an unbounded wait never does."""
    while not stopping.wait(0.2):
        pass


def _where_admin_token_is(settings: Settings) -> str:
    if os.environ.get("AUTOIMPORT_ADMIN_TOKEN", "").strip():
        return "from AUTOIMPORT_ADMIN_TOKEN"
    return f"in {settings.data_dir / 'admin.token'} (the CLI reads it from there)"


def serve(settings: Settings, connector_for: ConnectorFactory | None = None) -> None:
    """Runs until SIGTERM or SIGINT, then stops gracefully."""
    metrics_address = metrics.start_http_server(settings.metrics_listen)  # first: it may fail
    server = build_server(settings, connector_for)
    store = "PostgreSQL" if settings.uses_postgres else f"SQLite in {settings.data_dir}"
    print(f"autoimport listening on {server.address} ({store})", flush=True)
    if metrics_address:
        print(f"autoimport metrics at http://{metrics_address}/metrics", flush=True)
    # Where the admin token is, never the token itself: stdout is collected like any log.
    print(f"admin token: {_where_admin_token_is(settings)}", flush=True)
    log.info("serving gRPC at %s (%s)", server.address, store)
    if settings.cipher_key_beside_the_data:
        log.warning("%s", settings.cipher_key_beside_the_data)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    wait_for_signal(stopping)
    log.info("stopping: finishing calls in flight")
    if not server.stop():
        # A cancelled call's thread blocks still; waiting for it serves no one. Exiting now is
        # no worse than a SIGKILL, which loses nothing: a sync's lease fences a stale writer.
        log.warning("exiting with calls still blocked after the grace period")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

"""The projector and the imports view, in-process: exactly once, resumable, no leaks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, OperationalError, Tracking

from domain.auto_import import AutoImport
from domain.import_settings import Credentials, ImportChanges, NewImport
from service import projector as projector_module
from service.application import AutoImports
from service.config import RunProjections, Settings
from service.projector import Projector, catch_up
from service.read_models import open_view
from service.read_models.views import VIEW_CLASSES, AccountViewsProjection
from service.stores import open_application
from tests.conftest import STORES
from tests.support import PG_URL, wait_for


@pytest.fixture
def settings(store_env: dict[str, str]) -> Settings:
    return Settings.from_env(store_env)


@pytest.fixture
def app(settings: Settings) -> Iterator[AutoImports]:
    application = open_application(settings)
    yield application
    application.close()


def open_imports_view(settings: Settings, name: str = AccountViewsProjection.name) -> Any:
    return open_view(
        type(name, (AccountViewsProjection,), {"name": name}),
        VIEW_CLASSES,
        settings.store_env(name, create_tables=True),  # a view of its own
    )


def make_imports(app: AutoImports, count: int) -> list[AutoImport]:
    app.upsert_account("acme", "lite", 100, actor="admin")
    made = []
    for n in range(count):
        made.append(
            app.create_import(
                "acme", NewImport("shopify", f"s{n}", Credentials("t")), actor="admin"
            )
        )
    return made


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_an_event_is_applied_to_the_view_once_even_when_delivered_twice(
    app: AutoImports, settings: Settings
):
    created = make_imports(app, 1)[0]
    app.update_import("acme", created.id, ImportChanges(tags=["x"]), etag="", actor="admin")
    view = open_imports_view(settings)
    projection = AccountViewsProjection(view=view)
    catch_up(app, projection)
    last = app.recorder.max_notification_id()
    update_event = app.mapper.to_domain_event(app.recorder.select_notifications(last, 1)[0])

    with pytest.raises(IntegrityError):
        projection.process_event(update_event, Tracking(app.name, last))

    rows = view.list_imports("acme", "", 10, "").rows
    assert [(r.tags, r.version) for r in rows] == [(["x"], 2)]
    view.datastore.close()


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_view_rebuilt_from_the_start_equals_the_live_one(app: AutoImports, settings: Settings):
    made = make_imports(app, 7)
    app.pause_import("acme", made[1].id, actor="admin")
    app.delete_import("acme", made[2].id, etag="", actor="admin")
    app.update_import("acme", made[3].id, ImportChanges(display_name="x"), etag="", actor="admin")
    live = AccountViewsProjection(view=open_imports_view(settings))
    rebuilt = AccountViewsProjection(view=open_imports_view(settings, "rebuilt_view"))
    while catch_up(app, live, batch=3):  # small batches: resuming from tracking each time
        pass
    catch_up(app, rebuilt, batch=1000)

    assert rebuilt.view.list_imports("acme", "", 100, "") == live.view.list_imports(
        "acme", "", 100, ""
    )
    assert live.view.count_by_service("acme") == {"shopify": 6}
    live.view.datastore.close()
    rebuilt.view.datastore.close()


class _FailingProjection(AccountViewsProjection):
    name = "failing_view"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        raise RuntimeError("a projection bug")


@pytest.mark.postgres
@pytest.mark.parametrize("store_env", ["postgres"], indirect=True)
def test_a_crashing_projection_restarts_without_leaking_connections(
    app: AutoImports, settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    make_imports(app, 1)
    monkeypatch.setattr(projector_module, "PROJECTIONS", [(_FailingProjection, VIEW_CLASSES)])
    monkeypatch.setattr(projector_module, "RETRY_INTERVAL", 0.05)
    monkeypatch.setattr(projector_module, "MAX_PAUSE", 0.1)
    projector = Projector(settings)
    projector.start()
    try:
        wait_for(lambda: len(projector.errors), lambda n: n >= 3)
        connections_after_3 = _connections()
        wait_for(lambda: len(projector.errors), lambda n: n >= 15)
        connections_after_15 = _connections()
    finally:
        projector.stop()

    assert connections_after_15 <= connections_after_3 + 2


def _connections() -> int:
    with psycopg.connect(PG_URL) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchone()
        assert row is not None
        return int(row[0])


class _Fault:
    """Makes the projection fail on every sync report while `on`, as a bug or a bad row would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: Exception | None = None) -> None:
        from service.read_models import views

        self.on = True
        upsert = views._upsert

        def failing_upsert(table: str, *args: Any) -> Any:
            if self.on and table == "syncs":
                raise error or RuntimeError("a projection bug")
            return upsert(table, *args)

        monkeypatch.setattr(views, "_upsert", failing_upsert)


def _finished_sync(app: AutoImports) -> AutoImport:
    (auto_import,) = make_imports(app, 1)
    auto_import.start_sync(sync_id="s-1", request_id="", now=START, until=START, actor="test")
    auto_import.complete_sync(START)
    app.save(auto_import)
    return auto_import


START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "traceback"),
    [
        (RuntimeError("a projection bug"), True),
        # The store's fault, not the code's: one line each retry, as the API logs it.
        (OperationalError("database or disk is full"), False),
        (
            psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
            False,
        ),
    ],
    ids=["bug", "store", "postgres restarting"],
)
@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_projection_that_cannot_apply_an_event_says_so_and_recovers(
    app: AutoImports,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    traceback: bool,
):
    monkeypatch.setattr(projector_module, "RETRY_INTERVAL", 0.05)
    monkeypatch.setattr(projector_module, "MAX_PAUSE", 0.1)
    fault = _Fault(monkeypatch, error)
    _finished_sync(app)
    health: list[str | None] = []
    projector = Projector(settings, app, on_health=health.append)
    projector.start()
    try:
        wait_for(lambda: list(health), lambda h: len(h) >= 1)
        stuck = health[0]
        fault.on = False
        wait_for(lambda: list(health), lambda h: h[-1:] == [None])
    finally:
        projector.stop()

    assert stuck is not None and "cannot apply events" in stuck and "SyncCompleted" in stuck
    logged = [r for r in caplog.records if r.levelname == "ERROR" and "is stuck" in r.message]
    assert logged and str(error) in logged[0].message
    assert all(bool(r.exc_info) is traceback for r in logged)


@pytest.mark.parametrize("store_env", ["sqlite"], indirect=True)
def test_a_server_whose_projection_is_stuck_says_so_in_health_and_in_its_answers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from service import read_models
    from service.errors import Unavailable
    from service.server import PROJECTOR_HEALTH, build_server

    monkeypatch.setattr(projector_module, "RETRY_INTERVAL", 0.05)
    monkeypatch.setattr(projector_module, "MAX_PAUSE", 0.1)
    monkeypatch.setattr(read_models, "READ_TIMEOUT", 0.2)  # reads give up after 0.2 s
    fault = _Fault(monkeypatch)
    # The fault is patched into this process: the projector must run in it (in a thread).
    server = build_server(replace(settings, run_projections=RunProjections.THREAD))
    try:
        _finished_sync(server.app)
        with grpc.insecure_channel(server.address) as channel:
            checker = health_pb2_grpc.HealthStub(channel)

            def status() -> int:
                request = health_pb2.HealthCheckRequest(service=PROJECTOR_HEALTH)
                return checker.Check(request).status

            wait_for(status, lambda s: s == health_pb2.HealthCheckResponse.NOT_SERVING)
            with pytest.raises(Unavailable, match="projection fails on an event"):
                server.read_models.caught_up()
            fault.on = False
            wait_for(status, lambda s: s == health_pb2.HealthCheckResponse.SERVING)
    finally:
        server.stop(grace=0)

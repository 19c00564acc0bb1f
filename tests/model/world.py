"""The system under test of the sync model: the real application, read model and sync engines
on a fresh store, replicas with clocks of their own, and syncs that run one page at a time.

Syncs run in threads, but one step at a time: a sync's connector waits at a gate before each
page, and the test releases exactly one sync at a time and waits until that one is back at a
gate or finished. Everything a step does (the page's read, its decision, its save, its retries)
happens while every other sync waits, so a run is a deterministic interleaving of pages that
hypothesis chooses and shrinks. No sleeps: the test and the sync threads hand over by queues.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from connectors.base import AuthError
from domain.import_settings import Credentials
from domain.sources import Criteria
from domain.sync import ContactPage
from service.application import AutoImports
from service.config import Settings
from service.leases import Leases, LocalLeases, PostgresLeases
from service.projector import catch_up
from service.read_models import open_view
from service.read_models.contacts import ContactRow
from service.read_models.views import VIEW_CLASSES, AccountViews, AccountViewsProjection
from service.stores import open_application
from service.sync import SyncEngine
from tests.scripted import InterferingApp, ScriptedConnector, ScriptedSource
from tests.support import store_env

STEP_TIMEOUT = 60.0  # seconds a released sync may take to come back before the test fails
# The connector's lag: the sync reads nothing changed less than this before its clock. It is
# larger than any replica's clock skew, so a contact changed "now" is never read before the
# source's clock has moved on (with a skew beyond the lag, contacts may be missed for real).
LAG = timedelta(seconds=3)


class Crash(BaseException):
    """The process running a sync dies: nothing of the engine catches it, nothing is saved."""


class CredentialsRejected(AuthError):
    """The source refuses the import's credentials (an HTTP 401)."""


class SyncRun:
    """One TriggerSync in a thread of its own, which waits at a gate before each page."""

    def __init__(self, name: str, replica: Replica, account_id: str, import_id: UUID):
        self.name = name
        self.replica = replica
        self.account_id = account_id
        self.import_id = import_id
        self.pages: list[tuple[str, ContactPage]] = []  # (cursor asked, page read), in order
        self.outcome: Any = None  # the report returned, or the exception raised
        self.done = False
        self.crashed = False
        self._commands: queue.Queue[str] = queue.Queue()
        self._signals: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._body, name=f"sync-{name}", daemon=True)

    def start(self) -> None:
        """Triggers the sync; returns once it waits before its first page (or has finished)."""
        self._thread.start()
        self._wait()

    def step(self, command: str = "read") -> None:
        """Lets the sync go on: "read" its next page (and save it, and reach the next gate),
        "crash" there, or be refused the credentials ("reject")."""
        assert not self.done
        self.crashed = command == "crash"
        self._commands.put(command)
        self._wait()

    def gate(self, _page: int) -> None:
        self._signals.put("waiting")
        command = self._commands.get(timeout=STEP_TIMEOUT)
        if command == "crash":
            raise Crash(f"{self.name}: the replica died before its next page")
        if command == "reject":
            raise CredentialsRejected("the shop refused the credentials: reconnect the account")

    def _body(self) -> None:
        _current.run = self
        try:
            self.outcome = self.replica.engine.trigger(
                self.account_id, self.import_id, actor="scheduler"
            )
        except BaseException as e:
            self.outcome = e
        finally:
            self.done = True
            self._signals.put("done")

    def _wait(self) -> None:
        try:
            self._signals.get(timeout=STEP_TIMEOUT)
        except queue.Empty:
            raise AssertionError(
                f"sync {self.name} did not come back within {STEP_TIMEOUT}s"
            ) from None
        if self.done:
            self._thread.join(STEP_TIMEOUT)

    def abandon(self) -> None:
        """Ends the thread whatever it is doing (teardown)."""
        while not self.done:
            self.step("crash")


_current = threading.local()  # the SyncRun of a sync thread


class SteppedConnectors:
    """The connector factory of every replica: a ScriptedConnector on the shop's source that
    waits at its sync's gate before each page and logs what it read."""

    def __init__(self, sources: dict[str, ScriptedSource], page_size: int, positions: bool):
        self.sources = sources
        self.page_size = page_size
        self.positions = positions

    def __call__(self, auto_import: Any) -> Any:
        run: SyncRun = _current.run
        return _LoggedConnector(
            run,
            self.sources[auto_import.external_account],
            page_size=self.page_size,
            before_page=run.gate,
            lag=LAG,
            positions=self.positions,
            apply_criteria=True,
        )


class _LoggedConnector(ScriptedConnector):
    def __init__(self, run: SyncRun, source: ScriptedSource, **options: Any):
        super().__init__(source, **options)
        self._run = run

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
        page = super().fetch_page(criteria, cursor, until)
        self._run.pages.append((cursor, page))
        return page


class Replica:
    """A server process: its application (on PostgreSQL, its own, on the shared schema), its
    sync engine, its clock (the world's time plus its skew), the faults armed for its next save."""

    def __init__(
        self,
        index: int,
        app: AutoImports,
        connectors: SteppedConnectors,
        leases: Leases,
        skew: float,
        now: Callable[[], datetime],
        interval: float,
    ):
        self.index = index
        self.app = app
        self.skew = timedelta(seconds=skew)
        self.faulty = InterferingApp(app)
        self.engine = SyncEngine(
            self.faulty,  # type: ignore[arg-type]
            connectors,
            interval=interval,
            leases=leases,
            clock=lambda: now() + self.skew,
        )

    def disarm(self) -> None:
        self.faulty.before_next_save = None
        self.faulty.lose_next_ack = False


class World:
    """A fresh store (an SQLite directory, or a PostgreSQL schema), its replicas, the account's
    read model as one projector keeps it, and the shops' sources."""

    def __init__(self, store: str, *, positions: bool, interval: float, start: datetime):
        self.store = store
        self.interval = interval
        self.now = start  # the world's time: the sources' clock
        self._exit = contextlib.ExitStack()
        self._tmp = Path(tempfile.mkdtemp(prefix="sync-model-"))
        self._exit.callback(shutil.rmtree, self._tmp, True)
        self.env = self._exit.enter_context(store_env(store, self._tmp))
        self.settings = Settings.from_env(self.env)
        self.app = open_application(self.settings)  # replica 0's: the admin's, the projector's
        self._exit.callback(self.app.close)
        self.views: AccountViews = open_view(
            AccountViewsProjection,
            VIEW_CLASSES,
            self.settings.store_env(AccountViewsProjection.name),
        )
        self._exit.callback(self.views.datastore.close)
        self.projection = AccountViewsProjection(view=self.views)
        self.sources: dict[str, ScriptedSource] = {}
        self.positions = positions
        self.replicas: list[Replica] = []
        self.runs: list[SyncRun] = []
        self._local_leases = LocalLeases()

    def add_replicas(self, skews: list[float], page_size: int) -> None:
        connectors = SteppedConnectors(self.sources, page_size, self.positions)
        for index, skew in enumerate(skews):
            app = self.app
            leases: Leases = self._local_leases  # SQLite: one process, its threads
            if self.settings.uses_postgres:
                if index:
                    app = open_application(self.settings)
                    self._exit.callback(app.close)
                namespace = f"autoimport/{self.settings.database_schema}"
                leases = PostgresLeases(self.settings.database_url, namespace)
            replica = Replica(index, app, connectors, leases, skew, self.clock, self.interval)
            self.replicas.append(replica)

    def clock(self) -> datetime:
        return self.now

    def source(self, shop: str) -> ScriptedSource:
        return self.sources.setdefault(shop, ScriptedSource())

    # -- syncs ------------------------------------------------------------------------------
    def start_sync(self, replica: Replica, account_id: str, import_id: UUID) -> SyncRun:
        run = SyncRun(f"{len(self.runs)}@{replica.index}", replica, account_id, import_id)
        self.runs.append(run)
        run.start()
        return run

    def live_runs(self) -> list[SyncRun]:
        return [run for run in self.runs if not run.done]

    # -- the read model ---------------------------------------------------------------------
    def catch_up(self) -> None:
        while catch_up(self.app, self.projection):
            pass

    def contacts(self, account_id: str) -> list[ContactRow]:
        self.catch_up()
        rows: list[ContactRow] = []
        token = ""
        while True:
            page = self.views.list_contacts(account_id, 1000, token)
            rows += page.rows
            token = page.next_page_token
            if not token:
                return rows

    def close(self) -> None:
        for run in self.runs:
            with contextlib.suppress(BaseException):
                run.abandon()
        self._exit.close()


def new_credentials(n: int) -> Credentials:
    return Credentials(f"token-{n}")

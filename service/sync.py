"""The sync engine: runs one sync of one import, page by page, against its connector.

The decisions are the domain's (domain/sync.py); this module loads what a page needs, saves it
in one transaction with everything it changed, and retries a page that met a concurrent write.
The import's cursor is saved with each page, so a sync that dies (a crash, a kill, a lost
connection) resumes from the last saved page, and contacts it saved are never added twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from connectors import SOURCES
from connectors.base import (
    AuthError,
    Connector,
    ConnectorError,
    ConnectorFactory,
    ReauthRequired,
    check_deadline,
)
from domain.auto_import import AutoImport, ImportState
from domain.external_account import window_of
from domain.import_settings import Credentials
from domain.sync import ContactPage, DeclaredField, sync_page
from domain.sync_report import SyncReport
from service.application import AutoImports, retry_on_conflict
from service.errors import Unavailable
from service.existing import contacts_by_email
from service.leases import Leases

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Told of each sync this engine ran, once it ended, whatever the outcome: the import as it then
# was, and the sync's report (the server's logs and metrics listen).
SyncListener = Callable[[AutoImport, SyncReport], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


SCHEDULER_ACTOR = "scheduler"  # who starts a scheduled sync, in the import's history
NOT_DUE = "NOT_DUE"
ALREADY_RUNNING = "ALREADY_RUNNING"


@dataclass(frozen=True)
class NotStarted:
    """A scheduled sync that did not start: why (NOT_DUE, ALREADY_RUNNING), the report of the
    import's latest sync (None if none), and when the next sync is due (None: never, or not
    known because another sync runs)."""

    reason: str
    report: SyncReport | None
    next_sync_time: datetime | None


class _NotDue(Exception):
    def __init__(self, not_started: NotStarted):
        self.not_started = not_started


class SyncEngine:
    def __init__(
        self,
        app: AutoImports,
        connector_for: ConnectorFactory,
        *,
        interval: float,
        leases: Leases,
        clock: Clock = utc_now,
        listeners: Sequence[SyncListener] = (),
    ):
        """`leases` make sure that one sync of an import runs at a time in the deployment."""
        self._listeners = tuple(listeners)
        self._app = app
        self._connector_for = connector_for
        self._interval = interval
        self._leases = leases
        self._clock = clock

    def trigger(
        self,
        account_id: str,
        import_id: UUID,
        *,
        request_id: str = "",
        actor: str,
        deadline: float | None = None,
    ) -> SyncReport:
        """Runs a sync and returns its report; while one runs, returns that one's report.
        `deadline` (time.monotonic()): when the caller stops waiting. The sync stops there,
        between pages (its requests are cut to it), and the next sync resumes after the last
        page saved: no sync outlives its caller, holding the lease."""
        asked = self._app.get_import(account_id, import_id)  # NOT_FOUND before anything else
        with self._leases.hold(f"sync/{import_id}") as held:
            if held:
                return self._run(account_id, import_id, request_id, actor, deadline)
        return self._running_report(account_id, import_id, asked.last_sync)

    def trigger_scheduled(
        self,
        account_id: str,
        import_id: UUID,
        *,
        request_id: str = "",
        deadline: float | None = None,
    ) -> SyncReport | NotStarted:
        """The scheduler's trigger: runs a sync only if the import is due (never synced, or one
        interval after its last sync began), else runs nothing and says why. The check is made
        under the sync lease, on the import as loaded, and SyncStarted is saved at the version
        checked: two schedulers, or two replicas, can never both start a sync of one interval
        (the second finds the lease held, or the first's start on a reload)."""
        self._app.get_import(account_id, import_id)  # NOT_FOUND before anything else
        with self._leases.hold(f"sync/{import_id}") as held:
            if held:
                try:
                    return self._run(
                        account_id, import_id, request_id, SCHEDULER_ACTOR, deadline, scheduled=True
                    )
                except _NotDue as e:
                    return e.not_started
        auto_import = self._app.get_import(account_id, import_id)
        latest = auto_import.running_sync or auto_import.last_sync
        return NotStarted(ALREADY_RUNNING, latest, None)  # no wait for it to be recorded

    def _running_report(
        self, account_id: str, import_id: UUID, last_when_asked: SyncReport | None
    ) -> SyncReport:
        """The report of the sync that holds the lease (it may take a moment to record it), or
        of the one that ended since the caller asked: it ran while they asked, and the lease
        is released just after its end is saved (waiting for a start would wait in vain)."""
        for _ in range(50):
            auto_import = self._app.get_import(account_id, import_id)
            running, last = auto_import.running_sync, auto_import.last_sync
            if running is not None:
                return running
            if last is not None and (
                last_when_asked is None or last.sync_id != last_when_asked.sync_id
            ):
                return last
            time.sleep(0.1)
        raise Unavailable("a sync of this import is starting elsewhere: retry shortly")

    def _run(
        self,
        account_id: str,
        import_id: UUID,
        request_id: str,
        actor: str,
        deadline: float | None,
        scheduled: bool = False,
    ) -> SyncReport:
        # No connector for the service: refused before anything is recorded.
        connector = self._connector_for(self._app.get_import(account_id, import_id))
        with contextlib.closing(connector):
            return self._sync(
                account_id, import_id, request_id, actor, connector, deadline, scheduled
            )

    def _sync(
        self,
        account_id: str,
        import_id: UUID,
        request_id: str,
        actor: str,
        connector: Connector,
        deadline: float | None,
        scheduled: bool = False,
    ) -> SyncReport:
        sync_id = str(uuid4())
        started = self._start(
            account_id, import_id, sync_id, request_id, actor, connector.lag, scheduled
        )
        if not started.is_running_sync(sync_id):  # a retried request whose sync is done
            assert started.last_sync is not None
            return started.last_sync
        source = SOURCES[started.service]
        declared = source.declared_fields()
        criteria = started.criteria
        read_criteria = source.criteria_of(criteria)
        cursor = started.cursor or ""
        grant = started.credentials  # what the connector reads with: it may refresh them
        try:
            while True:
                check_deadline(deadline)
                self._leases.check(f"sync/{import_id}")  # a lost lease stops between pages
                page = connector.fetch_page(
                    read_criteria, cursor, started.sync_until, deadline=deadline
                )
                outcome = self._save_page(
                    account_id,
                    import_id,
                    sync_id,
                    criteria,
                    page,
                    page.fields_beside(declared),
                    grant,
                )
                if outcome is None:  # paused or deleted meanwhile: stop here
                    return self._finish(account_id, import_id, sync_id)  # already ended
                capped, cursor = outcome
                grant = page.credentials or grant
                if capped or not page.has_more:
                    break
        except ConnectorError as e:
            return self._finish(
                account_id,
                import_id,
                sync_id,
                failure=str(e),
                auth_failure=isinstance(e, AuthError),
                revoked=isinstance(e, ReauthRequired),
            )
        except Exception:
            log.exception("sync %s of import %s failed", sync_id, import_id)
            self._finish(
                account_id, import_id, sync_id, failure="internal error: see the server log"
            )
            raise
        return self._finish(account_id, import_id, sync_id)

    def _start(
        self,
        account_id: str,
        import_id: UUID,
        sync_id: str,
        request_id: str,
        actor: str,
        lag: timedelta,
        scheduled: bool = False,
    ) -> AutoImport:
        """Records SyncStarted; for a `scheduled` sync only if the import is due (else raises
        _NotDue, having saved nothing)."""

        def attempt() -> AutoImport:
            auto_import = self._app.get_import(account_id, import_id)
            if auto_import.is_running_sync(sync_id):
                return auto_import  # our own start, saved by an attempt that seemed to fail
            last = auto_import.last_sync
            if request_id and last is not None and last.request_id == request_id:
                return auto_import  # a retry of the request that started the last sync
            now = self._clock()
            if scheduled and not auto_import.is_due(now, self._interval):
                raise _NotDue(
                    NotStarted(
                        NOT_DUE, auto_import.last_sync, auto_import.next_sync_time(self._interval)
                    )
                )
            if auto_import.running_sync is not None:
                # We hold the lease, so the sync recorded as running runs nowhere: its process
                # died. Its saved pages stay; the new sync resumes from its cursor.
                auto_import.fail_sync("interrupted: the server running it stopped", now)
            auto_import.check_can_sync()
            auto_import.start_sync(
                sync_id=sync_id, request_id=request_id, now=now, until=now - lag, actor=actor
            )
            self._app.save(auto_import)
            return auto_import

        return retry_on_conflict(attempt, f"import {import_id}")

    def _save_page(
        self,
        account_id: str,
        import_id: UUID,
        sync_id: str,
        criteria: dict[str, Any],
        page: ContactPage,
        declared: dict[str, DeclaredField],
        grant: Credentials,
    ) -> tuple[bool, str] | None:
        """Decides and saves one page; decides again on fresh state after a concurrent write.
        Returns (capped, cursor), or None when the import stopped (paused, deleted, or its
        sync taken as interrupted by another replica)."""
        app = self._app

        def attempt() -> tuple[bool, str] | None:
            auto_import = app.get_import(account_id, import_id, include_deleted=True)
            if not auto_import.is_running_sync(sync_id):
                return None  # ended by a delete, or taken as interrupted by another process
            stopped = ""
            if auto_import.state is not ImportState.ACTIVE:
                stopped = f"stopped: the import became {auto_import.state.value}"
            elif auto_import.criteria != criteria:
                # This page was read with the old criteria; the next sync reads from the start.
                stopped = "stopped: the criteria changed"
            if stopped:
                auto_import.fail_sync(stopped, self._clock())
                app.save(auto_import)
                return None
            if page.credentials is not None:
                auto_import.refresh_access_token(page.credentials, replacing=grant)
            account = app.get_account(account_id)
            external = app.external_account_of(auto_import)
            # The window in force now, when the page is saved, not when the sync began.
            window = window_of(self._clock().timestamp(), self._interval)
            result = sync_page(
                auto_import=auto_import,
                account=account,
                external=external,
                window=window,
                page=page,
                contacts=contacts_by_email(
                    app, account_id, (c.email for c in page.contacts if not c.deleted)
                ),
                fields=app.fields_of(account_id, auto_import.service, declared),
                declared=declared,
            )
            app.save(
                auto_import, account, external, *result.new_aggregates, *result.updated_contacts
            )
            return result.capped, auto_import.cursor or ""

        return retry_on_conflict(attempt, f"a page of import {import_id}")

    def _finish(
        self,
        account_id: str,
        import_id: UUID,
        sync_id: str,
        failure: str = "",
        *,
        auth_failure: bool = False,
        revoked: bool = False,
    ) -> SyncReport:
        def attempt() -> SyncReport:
            auto_import = self._app.get_import(account_id, import_id, include_deleted=True)
            if not auto_import.is_running_sync(sync_id):
                return self._ended(auto_import, sync_id)  # ended by a pause, a delete, ...
            if failure:
                auto_import.fail_sync(
                    failure, self._clock(), auth_failure=auth_failure, revoked=revoked
                )
            else:
                auto_import.complete_sync(self._clock())
            self._app.save(auto_import)
            return self._ended(auto_import, sync_id)

        return retry_on_conflict(attempt, f"import {import_id}")

    def _ended(self, auto_import: AutoImport, sync_id: str) -> SyncReport:
        """The report of an ended sync, told to the listeners if it is the one of `sync_id`."""
        report = auto_import.last_sync
        assert report is not None  # our sync started, and something ended it
        if report.sync_id == sync_id:
            for listener in self._listeners:
                try:
                    listener(auto_import, report)
                except Exception:  # logs and metrics never fail a sync
                    log.exception("a listener of sync %s failed", sync_id)
        return report

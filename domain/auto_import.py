"""The AutoImport aggregate: one import's settings and lifecycle; its history is the audit log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    ImportAlreadyPaused,
    ImportIsDeleted,
    ImportNeedsReauth,
    ImportNotActive,
    ImportNotPaused,
    Violations,
)
from domain.ids import ID_NAMESPACE
from domain.import_settings import (
    Credentials,
    ImportChanges,
    NewImport,
    check_display_name,
    normalize_list_ids,
    normalize_tags,
)
from domain.sources import SourceRules, check_criteria, find_source
from domain.sync_report import Skipped, SyncOutcome, SyncReport, upcast_report
from domain.text import without_controls

MAX_SKIPPED_IN_REPORT = 100
# Syncs in a row that the service refused for the credentials before the import waits for a
# person to reconnect the account, rather than failing every 30 minutes (design.md section 5).
AUTH_FAILURES_BEFORE_REAUTH = 3
# The actor of a connector's OAuth refresh: a new access token for the same grant, not a change
# a person made (so the etag stays).
TOKEN_REFRESH_ACTOR = "connector:token-refresh"


class SkipReason(StrEnum):
    """Why the service skipped a contact. A source may also refuse one itself, in its own words
    (`ExternalContact.skip_reason`, e.g. an unconfirmed opt-in): counted as skipped at the
    source."""

    MISSING_EMAIL = "missing email"
    INVALID_EMAIL = "invalid email"
    CONTACT_LIMIT = "contact limit reached"


# The report's counter of each reason the service skips for; any other is the source's own.
_SKIP_COUNTERS = {
    SkipReason.MISSING_EMAIL.value: "skipped_missing_email",
    SkipReason.INVALID_EMAIL.value: "skipped_invalid_email",
    SkipReason.CONTACT_LIMIT.value: "blocked_by_limit",
}


def next_sync_due(created: datetime, last_sync_began: datetime | None, interval: float) -> datetime:
    """When an active import's next sync is due: at once (since its creation) if it never
    synced, else one interval after its last sync began, however that sync ended and however
    many intervals passed since (after an outage, one sync catches up, not one per window)."""
    if last_sync_began is None:
        return created
    return last_sync_began + timedelta(seconds=interval)


class ImportState(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    NEEDS_REAUTH = "NEEDS_REAUTH"
    DELETED = "DELETED"


def _repr_without_credentials(obj: object) -> str:
    """repr() that shows every attribute but the credentials, so that logging an aggregate or an
    event cannot leak tokens."""
    attrs = (
        f"{name.lstrip('_')}={'<hidden>' if name.lstrip('_') == 'credentials' else repr(value)}"
        for name, value in vars(obj).items()
        if name != "_pending_events"
    )
    return f"{type(obj).__name__}({', '.join(attrs)})"


class AutoImport(Aggregate):
    """One scheduled import of one external account's contacts into one account.

    Each event is written once, as the method that records it: `@event("ContactAdded")`
    names the event class, and the method's parameters are its attributes (as stored histories
    hold them). The events the read models project are declared as classes, so that their
    handlers are typed, each recorded by one method (`@event(Paused)`). A command that checks
    first is a public method calling the private one that records. The recording bodies run
    again on every replay: they only apply what the event says.
    """

    __repr__ = _repr_without_credentials

    # Snapshots of version 1 kept the sync reports under their public names (upcast_v1_v2);
    # those of versions 1 and 2 may hold reports of an earlier shape (upcast_v2_v3).
    class_version = 3

    # Failed syncs in a row whose cause was the credentials (a class default: snapshots taken
    # before it existed lack the attribute).
    auth_failures = 0

    # -- the events the read models project (service/read_models/views.py) -------------------
    class Created(Aggregate.Created):
        account_id: str
        request_id: str
        service: str
        external_account: str
        display_name: str
        credentials: dict[str, str]
        criteria: dict[str, Any]
        list_ids: list[str]
        tags: list[str]
        actor: str

    class Updated(Aggregate.Event):
        changes: dict[str, Any]  # only the settings that changed, by name
        actor: str

    class CredentialsRotated(Aggregate.Event):
        credentials: dict[str, str]
        actor: str

    class Paused(Aggregate.Event):
        actor: str

    class Resumed(Aggregate.Event):
        actor: str

    class Deleted(Aggregate.Event):
        actor: str

    class ReauthNeeded(Aggregate.Event):
        reason: str  # what the service said, and what a person must do

    class SyncStarted(Aggregate.Event):
        sync_id: str
        request_id: str
        start_time: datetime
        until: datetime  # contacts changed after this wait for the next sync
        actor: str

    class SyncCompleted(Aggregate.Event):
        report: dict[str, Any]  # SyncReport.to_dict()
        class_version = 2  # version 1 may hold a report of an earlier shape

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            upcast_report(state["report"])

    class SyncFailed(Aggregate.Event):
        reason: str
        report: dict[str, Any]  # SyncReport.to_dict()
        class_version = 2  # version 1 may hold a report of an earlier shape

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            upcast_report(state["report"])

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["_running_sync"] = state.pop("running_sync", None)
        state["_last_sync"] = state.pop("last_sync", None)

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        for name in ("_running_sync", "_last_sync"):
            if state[name] is not None:
                upcast_report(state[name])

    @staticmethod
    def create_id(account_id: str, request_id: str) -> UUID:
        """A repeated request_id names the same import, so a retried create cannot make two."""
        if not request_id:
            return uuid4()
        return uuid5(ID_NAMESPACE, f"import/{account_id}/{request_id}")

    @classmethod
    def start(
        cls,
        account_id: str,
        new: NewImport,
        sources: Mapping[str, SourceRules],
        *,
        actor: str,
        request_id: str = "",
        default_display_name: Any = None,
    ) -> AutoImport:
        """Validates a new import of one of `sources` and creates it. Raises ValidationError
        listing every bad field. Unset criteria are the service's defaults, validated too (a
        service may need one, e.g. which audience).

        `default_display_name(service, external_account)` names the import when the caller did not.
        """
        violations = Violations()
        source = find_source(sources, new.service, violations)
        display_name = check_display_name(new.display_name, violations)
        list_ids = normalize_list_ids(new.list_ids, violations)
        tags = normalize_tags(new.tags, violations)
        external_account = new.external_account
        criteria = new.criteria
        if source is not None:
            external_account = source.normalize_external_account(
                new.external_account, violations, "external_account"
            )
            source.check_credentials(new.credentials, violations, "credentials")
            criteria = criteria or source.criteria_type()
            check_criteria(source, criteria, violations)
        violations.raise_if_any()
        assert source is not None and criteria is not None
        if not display_name and default_display_name is not None:
            display_name = default_display_name(source.id, external_account)
        return cls(
            account_id=account_id,
            request_id=request_id,
            service=source.id,
            external_account=external_account,
            display_name=display_name,
            credentials=new.credentials.to_dict(),
            criteria=criteria.to_dict(),
            list_ids=list_ids,
            tags=tags,
            actor=actor,
        )

    @event(Created)
    def __init__(
        self,
        *,
        account_id: str,
        request_id: str,
        service: str,
        external_account: str,
        display_name: str,
        credentials: dict[str, str],
        criteria: dict[str, Any],
        list_ids: list[str],
        tags: list[str],
        actor: str,
    ) -> None:
        self.account_id = account_id
        # Enums are kept as their values: snapshots store attributes as JSON, which has no enums.
        self._service = service
        self.external_account = external_account
        self.display_name = display_name
        self._credentials = dict(credentials)
        self._criteria = dict(criteria)
        self.list_ids = list(list_ids)
        self.tags = list(tags)
        self._state = ImportState.ACTIVE.value
        self.state_reason = ""
        # The version of the last change of settings or state, not of sync progress: the etag,
        # so that a sync running meanwhile does not invalidate what a person just read.
        self.config_version = 1
        self.cursor: str | None = None  # where the next sync resumes
        # The reports of the sync under way and of the last finished one, as their events
        # carry them (SyncReport.to_dict()): snapshots store attributes as JSON.
        self._running_sync: dict[str, Any] | None = None
        self._last_sync: dict[str, Any] | None = None

    # -- what the rest of the service reads -------------------------------------------------
    @property
    def service(self) -> str:
        return self._service

    @property
    def state(self) -> ImportState:
        return ImportState(self._state)

    @state.setter
    def state(self, state: ImportState) -> None:
        self._state = state.value

    @property
    def credentials(self) -> Credentials:
        return Credentials(**self._credentials)

    @property
    def criteria(self) -> dict[str, Any]:
        """As stored: the service's `Source.criteria_of` makes the value object of it."""
        return dict(self._criteria)

    @property
    def is_deleted(self) -> bool:
        return self.state is ImportState.DELETED

    @property
    def running_sync(self) -> SyncReport | None:
        """The report of the sync under way (or left running by a process that died)."""
        return SyncReport.from_dict(self._running_sync) if self._running_sync else None

    @property
    def last_sync(self) -> SyncReport | None:
        """The report of the last sync that ended."""
        return SyncReport.from_dict(self._last_sync) if self._last_sync else None

    def is_running_sync(self, sync_id: str) -> bool:
        return self._running_sync is not None and self._running_sync["sync_id"] == sync_id

    # -- rules ------------------------------------------------------------------------------
    def check_not_deleted(self) -> None:
        if self.is_deleted:
            raise ImportIsDeleted("the import was deleted")

    def check_not_needing_reauth(self) -> None:
        """Only new credentials take an import out of NEEDS_REAUTH (pausing then resuming would
        otherwise reactivate it with the rejected ones)."""
        if self.state is ImportState.NEEDS_REAUTH:
            raise ImportNeedsReauth(
                "the import needs new credentials: update its credentials to reconnect the account"
            )

    # -- commands ---------------------------------------------------------------------------
    def update(self, changes: ImportChanges, source: SourceRules, *, actor: str) -> None:
        """Applies the fields that change (checked by the rules of the import's service,
        `source`); records nothing when nothing changes."""
        assert source.id == self.service
        self.check_not_deleted()
        violations = Violations()
        settings: dict[str, Any] = {}
        if changes.display_name is not None:
            settings["display_name"] = check_display_name(changes.display_name, violations)
        if changes.criteria is not None:
            check_criteria(source, changes.criteria, violations)
            settings["criteria"] = changes.criteria.to_dict()
        elif changes.reset_criteria:
            default = source.criteria_type()
            check_criteria(source, default, violations)
            settings["criteria"] = default.to_dict()
        if changes.list_ids is not None:
            settings["list_ids"] = normalize_list_ids(changes.list_ids, violations)
        if changes.tags is not None:
            settings["tags"] = normalize_tags(changes.tags, violations)
        if changes.credentials is not None:
            source.check_credentials(changes.credentials, violations, "credentials")
        violations.raise_if_any()

        current = {
            "display_name": self.display_name,
            "criteria": self._criteria,
            "list_ids": self.list_ids,
            "tags": self.tags,
        }
        changed = {k: v for k, v in settings.items() if current[k] != v}
        if changed:
            self._update(changes=changed, actor=actor)
        if "criteria" in changed and self.cursor is not None:
            # The cursor passed records that did not match the old criteria (connectors filter
            # after reading): resuming from it would never import those that match now.
            self._restart_read(reason="the criteria changed: the next sync reads every contact")
        if changes.credentials is not None and not changes.credentials.same_grant(self.credentials):
            self._rotate_credentials(credentials=changes.credentials.to_dict(), actor=actor)

    def refresh_access_token(self, credentials: Credentials, *, replacing: Credentials) -> None:
        """Keeps the credentials a connector obtained by refreshing `replacing` (the import's
        credentials it was reading with); ignored when a person set others meanwhile: theirs
        win. Google may hand out a new refresh token with the access token: kept too."""
        if self.is_deleted or not self.credentials.same_grant(replacing):
            return
        if credentials != self.credentials:
            self._rotate_credentials(credentials=credentials.to_dict(), actor=TOKEN_REFRESH_ACTOR)

    @event(Updated)
    def _update(self, changes: dict[str, Any], actor: str) -> None:
        self.config_version = self.version + 1
        for name, value in changes.items():
            if name == "criteria":
                self._criteria = dict(value)
            else:
                setattr(self, name, value)

    @event("ReadRestarted")
    def _restart_read(self, reason: str) -> None:
        """`reason`: why the next sync reads every contact again, from the beginning."""
        self.cursor = None

    @event(CredentialsRotated)
    def _rotate_credentials(self, credentials: dict[str, str], actor: str) -> None:
        self._credentials = dict(credentials)
        if actor == TOKEN_REFRESH_ACTOR:
            return
        self.config_version = self.version + 1
        self.auth_failures = 0
        if self.state is ImportState.NEEDS_REAUTH:
            # New credentials are how a person reconnects the account.
            self.state = ImportState.ACTIVE
            self.state_reason = ""

    def pause(self, *, actor: str) -> None:
        self.check_not_deleted()
        self.check_not_needing_reauth()
        if self.state is ImportState.PAUSED:
            raise ImportAlreadyPaused("the import is already paused")
        self._pause(actor=actor)

    @event(Paused)
    def _pause(self, actor: str) -> None:
        self.config_version = self.version + 1
        self.state = ImportState.PAUSED
        self.state_reason = ""

    def resume(self, *, actor: str) -> None:
        self.check_not_deleted()
        self.check_not_needing_reauth()
        if self.state is not ImportState.PAUSED:
            raise ImportNotPaused("the import is not paused")
        self._resume(actor=actor)

    @event(Resumed)
    def _resume(self, actor: str) -> None:
        self.config_version = self.version + 1
        self.state = ImportState.ACTIVE

    def delete(self, *, actor: str, now: datetime | None = None) -> None:
        """A sync under way ends here, so that the history never ends on a sync that never
        ended: its process sees the sync ended at its next page, and stops."""
        self.check_not_deleted()
        if self._running_sync is not None:
            self.fail_sync("stopped: the import was deleted", now or datetime.now(UTC))
        self._delete(actor=actor)

    @event(Deleted)
    def _delete(self, actor: str) -> None:
        self.config_version = self.version + 1
        self.state = ImportState.DELETED
        self.state_reason = ""

    # -- syncs ------------------------------------------------------------------------------
    @property
    def last_sync_began(self) -> datetime | None:
        """The start of the sync under way (or left running by a process that died), else of
        the last one; None if it never synced."""
        report = self.running_sync or self.last_sync
        return report.start_time if report else None

    def next_sync_time(self, interval: float) -> datetime | None:
        """When the scheduler's next sync is due; None while it is never due (paused, needing
        re-authentication, deleted)."""
        if self.state is not ImportState.ACTIVE:
            return None
        return next_sync_due(self.created_on, self.last_sync_began, interval)

    def is_due(self, now: datetime, interval: float) -> bool:
        due = self.next_sync_time(interval)
        return due is not None and now >= due

    def check_can_sync(self) -> None:
        self.check_not_deleted()
        self.check_not_needing_reauth()
        if self.state is ImportState.PAUSED:
            raise ImportNotActive("the import is paused: resume it to sync")

    def start_sync(
        self, *, sync_id: str, request_id: str, now: datetime, until: datetime, actor: str
    ) -> None:
        self.check_can_sync()
        self._start_sync(
            sync_id=sync_id, request_id=request_id, start_time=now, until=until, actor=actor
        )

    @event(SyncStarted)
    def _start_sync(
        self, sync_id: str, request_id: str, start_time: datetime, until: datetime, actor: str
    ) -> None:
        report = SyncReport(
            sync_id=sync_id,
            outcome=SyncOutcome.RUNNING,
            start_time=start_time,
            request_id=request_id,
            until=until,
        )
        self._running_sync = report.to_dict()

    @property
    def sync_until(self) -> datetime:
        report = self.running_sync
        assert report is not None and report.until is not None
        return report.until

    def _count(self, name: str, n: int = 1) -> None:
        """Adds to a counter of the running sync's report, in place: a sync records one event
        per contact, too many to rebuild the report for each."""
        assert self._running_sync is not None, "sync events need a running sync"
        self._running_sync[name] += n

    @event("ContactAdded")
    def record_added(self, contact_id: str, email: str, external_id: str) -> None:
        self._count("added")

    @event("ContactUpdated")
    def record_updated(
        self, contact_id: str, email: str, external_id: str, changed: list[str]
    ) -> None:
        self._count("updated")

    @event("ContactSkipped")
    def record_skipped(self, external_id: str, email: str, reason: str) -> None:
        """`reason`: a SkipReason (stored as its value), or the source's own reason."""
        self._count(_SKIP_COUNTERS.get(str(reason), "skipped_at_source"))
        assert self._running_sync is not None
        skipped = self._running_sync["skipped"]
        if len(skipped) < MAX_SKIPPED_IN_REPORT:
            skipped.append(Skipped(external_id, email, str(reason)).to_dict())

    @event("ContactDeletedAtSource")
    def record_deleted_at_source(self, external_id: str) -> None:
        """The source deleted it; the account keeps its contact."""
        self._count("deleted_at_source")

    @event("FieldCreated")
    def record_field_created(
        self, field_id: str, key: str, title: str, personalization_tag: str
    ) -> None:
        self._count("fields_created")

    @event("LimitReached")
    def record_limit_reached(self, blocked: int) -> None:
        """`blocked`: new contacts of the page not added, the account being full (each one
        counted by its ContactSkipped)."""

    @event("BatchCapped")
    def record_capped(self, deferred: int) -> None:
        """`deferred`: contacts of the page left for the next window."""
        self._count("deferred", deferred)

    @event("CursorAdvanced")
    def advance_cursor(self, cursor: str, fetched: int, unchanged: int) -> None:
        """Every contact before `cursor` is processed."""
        self.cursor = cursor
        self._count("fetched", fetched)
        self._count("unchanged", unchanged)

    def complete_sync(self, now: datetime) -> None:
        running = self.running_sync
        assert running is not None
        if running.blocked_by_limit:
            outcome = SyncOutcome.LIMIT_REACHED
        elif running.deferred:
            outcome = SyncOutcome.CAPPED
        else:
            outcome = SyncOutcome.COMPLETED
        self._complete(report=replace(running, outcome=outcome, end_time=now).to_dict())

    @event(SyncCompleted)
    def _complete(self, report: dict[str, Any]) -> None:
        self._last_sync = report
        self._running_sync = None
        self.auth_failures = 0

    def fail_sync(
        self, reason: str, now: datetime, *, auth_failure: bool = False, revoked: bool = False
    ) -> None:
        """Ends the running sync as failed; what its pages saved stays saved. A failure caused
        by the credentials (`auth_failure`) that repeats, or a grant the service revoked
        (`revoked`), moves the import to NEEDS_REAUTH: only new credentials help. The reason
        may quote the service (an error body): its control characters are taken out."""
        reason = without_controls(reason)[0]
        running = self.running_sync
        assert running is not None
        report = replace(
            running,
            outcome=SyncOutcome.FAILED,
            end_time=now,
            error=reason,
            auth_failure=auth_failure or revoked,
        )
        self._fail(reason=reason, report=report.to_dict())
        too_many = self.auth_failures >= AUTH_FAILURES_BEFORE_REAUTH
        if (revoked or too_many) and self.state is ImportState.ACTIVE:
            self._reauth_needed(reason=reason)

    @event(SyncFailed)
    def _fail(self, reason: str, report: dict[str, Any]) -> None:
        self._last_sync = report
        self._running_sync = None
        failed = SyncReport.from_dict(report)
        self.auth_failures = self.auth_failures + 1 if failed.auth_failure else 0

    @event(ReauthNeeded)
    def _reauth_needed(self, reason: str) -> None:
        self.config_version = self.version + 1
        self.state = ImportState.NEEDS_REAUTH
        self.state_reason = reason


# eventsourcing redefines event classes as dataclasses, generating a repr() that would show the
# tokens: replace it on the classes that carry credentials.
AutoImport.Created.__repr__ = _repr_without_credentials  # type: ignore[method-assign]
AutoImport.CredentialsRotated.__repr__ = _repr_without_credentials  # type: ignore[method-assign]

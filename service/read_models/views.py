"""The account views: imports, contacts, fields and sync reports, projected from the events.

One projection keeps all four tables, in one database and with one tracking record: one runner,
one transaction per event (or per batch), and the tables always agree with each other.
"""

from __future__ import annotations

import functools
import json
from typing import Any, ClassVar

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder

from domain.auto_import import TOKEN_REFRESH_ACTOR, AutoImport, ImportState
from domain.contact import Contact, ContactStatus
from domain.custom_field import CustomField
from domain.sync_report import SyncReport
from service.read_models.contacts import CONTACT_COLUMNS, JSON_COLUMNS, ContactsTable
from service.read_models.fields import FieldsTable
from service.read_models.imports import IMPORT_COLUMNS, ImportsTable
from service.read_models.sql import Statement, iso
from service.read_models.syncs import SyncsTable


class AccountViews(ImportsTable, ContactsTable, FieldsTable, SyncsTable):
    ddl = ImportsTable.ddl + ContactsTable.ddl + FieldsTable.ddl + SyncsTable.ddl
    # Every table with its primary key.
    tables: ClassVar[dict[str, str]] = {
        "imports": "import_id",
        "contacts": "contact_id",
        "fields": "field_id",
        "syncs": "sync_id",
    }


class SQLiteAccountViews(AccountViews, SQLiteTrackingRecorder):
    pass


class PostgresAccountViews(AccountViews, PostgresTrackingRecorder):
    pass


VIEW_CLASSES: dict[str, type[AccountViews]] = {
    "eventsourcing.sqlite": SQLiteAccountViews,
    "eventsourcing.postgres": PostgresAccountViews,
}


def _upsert(table: str, columns: tuple[str, ...], values: dict[str, Any]) -> Statement:
    """Inserts a row, or replaces the one with its key: applying an event twice, or two events
    about one key (a sync recorded as failed, then completed by a retried write), leaves one row
    and never stops the projection."""
    return _upsert_text(table, columns), values


@functools.lru_cache(maxsize=64)  # a few tables and column sets, met once per event
def _upsert_text(table: str, columns: tuple[str, ...]) -> str:
    key = AccountViews.tables[table]
    names = ", ".join(columns)
    placeholders = ", ".join(f":{c}" for c in columns)
    assignments = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
    return (
        f"INSERT INTO {{t}}{table} ({names}) VALUES ({placeholders})"
        f" ON CONFLICT ({key}) DO UPDATE SET {assignments}"
    )


def _json(value: list[str] | dict[str, str]) -> str:
    """A column's JSON; most contacts have no lists, tags or fields (a third of the time of
    projecting a contact was json.dumps)."""
    return json.dumps(value) if value else ("[]" if isinstance(value, list) else "{}")


def _update(table: str, key: str, key_value: str, values: dict[str, Any]) -> Statement:
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    return (
        f"UPDATE {{t}}{table} SET {assignments} WHERE {key} = :{key}",
        {**values, key: key_value},
    )


class AccountViewsProjection(Projection[AccountViews]):
    # The version suffix names the tables: a projection that changes gets a new name, and is
    # rebuilt from the events into new tables.
    name = "account_views_v2"  # v2: imports.last_sync_start, for the scheduler's due imports

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Events that change no table still advance the view's position, so that a reader
        waiting for the latest event of the application is not kept waiting."""
        self.view.record(tracking)

    # -- imports ----------------------------------------------------------------------------
    @process_event.register
    def _import_created(self, e: AutoImport.Created, tracking: Tracking) -> None:
        row = {
            "import_id": str(e.originator_id),
            "account_id": e.account_id,
            "service": e.service,
            "display_name": e.display_name,
            "external_account": e.external_account,
            "criteria": json.dumps(e.criteria),
            "list_ids": json.dumps(e.list_ids),
            "tags": json.dumps(e.tags),
            "state": ImportState.ACTIVE.value,
            "state_reason": "",
            "create_time": iso(e.timestamp),
            "update_time": iso(e.timestamp),
            "version": e.originator_version,
            "last_sync": None,
            "last_sync_start": "",  # never synced: due at once, and listed first
        }
        self.view.record(tracking, [_upsert("imports", IMPORT_COLUMNS, row)])

    @process_event.register
    def _import_updated(self, e: AutoImport.Updated, tracking: Tracking) -> None:
        changes = {
            name: (json.dumps(value) if name in ("criteria", "list_ids", "tags") else value)
            for name, value in e.changes.items()
        }
        self._import_changed(e, tracking, changes)

    @process_event.register
    def _credentials_rotated(self, e: AutoImport.CredentialsRotated, tracking: Tracking) -> None:
        if e.actor == TOKEN_REFRESH_ACTOR:  # the same grant: not a change of the import
            self.view.record(tracking)
            return
        # The aggregate reactivates an import that needed re-authentication; mirror that.
        rows = self.view.fetch(
            "SELECT state FROM {t}imports WHERE import_id = :import_id",
            {"import_id": str(e.originator_id)},
        )
        changes: dict[str, Any] = {}
        if rows and rows[0]["state"] == ImportState.NEEDS_REAUTH.value:
            changes = {"state": ImportState.ACTIVE.value, "state_reason": ""}
        self._import_changed(e, tracking, changes)

    @process_event.register
    def _reauth_needed(self, e: AutoImport.ReauthNeeded, tracking: Tracking) -> None:
        changes = {"state": ImportState.NEEDS_REAUTH.value, "state_reason": e.reason}
        self._import_changed(e, tracking, changes)

    @process_event.register
    def _paused(self, e: AutoImport.Paused, tracking: Tracking) -> None:
        self._import_changed(e, tracking, {"state": ImportState.PAUSED.value, "state_reason": ""})

    @process_event.register
    def _resumed(self, e: AutoImport.Resumed, tracking: Tracking) -> None:
        self._import_changed(e, tracking, {"state": ImportState.ACTIVE.value})

    @process_event.register
    def _deleted(self, e: AutoImport.Deleted, tracking: Tracking) -> None:
        statement = (
            "DELETE FROM {t}imports WHERE import_id = :import_id",
            {"import_id": str(e.originator_id)},
        )
        self.view.record(tracking, [statement])

    def _import_changed(self, e: Any, tracking: Tracking, changes: dict[str, Any]) -> None:
        values = {**changes, "update_time": iso(e.timestamp), "version": e.originator_version}
        self.view.record(tracking, [_update("imports", "import_id", str(e.originator_id), values)])

    # -- syncs ------------------------------------------------------------------------------
    @process_event.register
    def _sync_started(self, e: AutoImport.SyncStarted, tracking: Tracking) -> None:
        # When the last sync began decides when the next is due, even while this one runs.
        values = {"last_sync_start": iso(e.start_time)}
        self.view.record(tracking, [_update("imports", "import_id", str(e.originator_id), values)])

    @process_event.register
    def _sync_completed(self, e: AutoImport.SyncCompleted, tracking: Tracking) -> None:
        self._sync_finished(e, tracking, e.report)

    @process_event.register
    def _sync_failed(self, e: AutoImport.SyncFailed, tracking: Tracking) -> None:
        self._sync_finished(e, tracking, e.report)

    def _sync_finished(self, e: Any, tracking: Tracking, report: dict[str, Any]) -> None:
        import_id = str(e.originator_id)
        rows = self.view.fetch(
            "SELECT account_id FROM {t}imports WHERE import_id = :import_id",
            {"import_id": import_id},
        )
        if not rows:  # deleted while its sync ran
            self.view.record(tracking)
            return
        report_text = json.dumps(report)  # as the event carries it
        sync = SyncReport.from_dict(report)
        sync_row = {
            "sync_id": sync.sync_id,
            "import_id": import_id,
            "account_id": rows[0]["account_id"],
            "start_time": sync.start_time.isoformat(),  # as the report has it
            "report": report_text,
        }
        self.view.record(
            tracking,
            [
                _upsert(
                    "syncs",
                    ("sync_id", "import_id", "account_id", "start_time", "report"),
                    sync_row,
                ),
                _update("imports", "import_id", import_id, {"last_sync": report_text}),
            ],
        )

    # -- contacts and fields ------------------------------------------------------------------
    @process_event.register
    def _contact_created(self, e: Contact.Created, tracking: Tracking) -> None:
        created = iso(e.timestamp)
        row = {
            "contact_id": str(e.originator_id),
            "account_id": e.account_id,
            "email": e.email,
            "first_name": e.first_name,
            "last_name": e.last_name,
            "phone": e.phone,
            "status": e.status,
            "fields": _json(e.fields),
            "list_ids": _json(e.list_ids),
            "tags": _json(e.tags),
            "sources": _json([e.source]),
            "create_time": created,
            "update_time": created,
        }
        self.view.record(tracking, [_upsert("contacts", CONTACT_COLUMNS, row)])

    @process_event.register
    def _contact_updated(self, e: Contact.Updated, tracking: Tracking) -> None:
        values: dict[str, Any] = {"update_time": iso(e.timestamp)}
        for name, value in e.changes.items():
            column = "status" if name == "_status" else name
            values[column] = json.dumps(value) if column in JSON_COLUMNS else value
        statement = _update("contacts", "contact_id", str(e.originator_id), values)
        self.view.record(tracking, [statement])

    @process_event.register
    def _contact_unsubscribed(self, e: Contact.Unsubscribed, tracking: Tracking) -> None:
        values = {"status": ContactStatus.UNSUBSCRIBED.value, "update_time": iso(e.timestamp)}
        statement = _update("contacts", "contact_id", str(e.originator_id), values)
        self.view.record(tracking, [statement])

    @process_event.register
    def _field_created(self, e: CustomField.Created, tracking: Tracking) -> None:
        row = {
            "field_id": str(e.originator_id),
            "account_id": e.account_id,
            "service": e.service,
            "key": e.key,
            "title": e.title,
            "personalization_tag": e.personalization_tag,
            "create_time": iso(e.timestamp),
        }
        columns = tuple(row)
        self.view.record(tracking, [_upsert("fields", columns, row)])

"""Protobuf messages to domain inputs and back. No decisions here, only translation."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from google.protobuf import struct_pb2, timestamp_pb2

from autoimport.v1 import accounts_pb2, contacts_pb2, fields_pb2, imports_pb2
from connectors import SOURCES
from connectors.base import Finding, Source
from domain.account import Account, ApiKeyInfo
from domain.auto_import import AutoImport, ImportState, next_sync_due
from domain.contact import CSV_SOURCE_PREFIX, Contact, InvalidEmail, normalize_email
from domain.csv_import import COUNTERS as CSV_COUNTERS
from domain.errors import ValidationError
from domain.import_settings import Credentials, NewImport
from domain.sources import Criteria
from domain.sync import Outcome, Preview
from domain.sync_report import SyncReport
from service.application import import_name
from service.read_models.contacts import ContactRow
from service.read_models.fields import FieldRow
from service.read_models.imports import DueImport, ImportRow
from service.sync import NotStarted

_NAME_PARTS = ("accounts", "imports")
CSV_SOURCE = "csv"  # what source_imports says for a CSV import ("csv:<id>" in sources)
# Event attributes that are bookkeeping, or secret, and never part of a history entry's details.
_NOT_DETAILS = {"originator_id", "originator_version", "timestamp", "originator_topic", "actor"}
_SECRET = {"credentials"}


def parse_import_name(name: str, field: str = "name") -> tuple[str, UUID]:
    parts = name.split("/")
    if len(parts) == 4 and (parts[0], parts[2]) == _NAME_PARTS and parts[1]:
        try:
            return parts[1], UUID(parts[3])
        except ValueError:
            pass
    raise ValidationError.single(
        field, "must be an import name: accounts/{account_id}/imports/{import_id}"
    )


def require(value: str, field: str) -> str:
    if not value:
        raise ValidationError.single(field, "is required")
    return value


def page_size_of(requested: int, *, default: int, maximum: int) -> int:
    """AIP-158: 0 means the default; larger than the maximum is brought down to it."""
    if requested < 0:
        raise ValidationError.single("page_size", "must not be negative")
    return min(requested or default, maximum)


def email_of(value: str, field: str = "email") -> str:
    try:
        return normalize_email(require(value, field))
    except InvalidEmail as e:
        raise ValidationError.single(field, f"must be a valid email address ({e})") from None


def credentials_from(message: imports_pb2.Credentials) -> Credentials:
    return Credentials(access_token=message.access_token, refresh_token=message.refresh_token)


def new_import_of(message: imports_pb2.AutoImport) -> NewImport:
    """What a caller asks for in an AutoImport message (CreateImport, or a check or preview)."""
    return NewImport(
        service=message.service,
        external_account=message.external_account,
        credentials=credentials_from(message.credentials),
        criteria=criteria_from(message),
        display_name=message.display_name,
        list_ids=list(message.list_ids),
        tags=list(message.tags),
    )


def criteria_from(message: imports_pb2.AutoImport) -> Criteria | None:
    """The criteria the message sets: its oneof member is the service's id, and the member's
    fields are those of the service's criteria type."""
    which = message.WhichOneof("criteria")
    if which is None:
        return None
    criteria_type = SOURCES[which].criteria_type
    member = getattr(message, which)
    return criteria_type(**{f.name: getattr(member, f.name) for f in fields(criteria_type)})


def row_of(auto_import: AutoImport) -> ImportRow:
    """The aggregate in the shape of the read model, so one function renders both."""
    return ImportRow(
        import_id=str(auto_import.id),
        account_id=auto_import.account_id,
        service=auto_import.service,
        display_name=auto_import.display_name,
        external_account=auto_import.external_account,
        criteria=auto_import.criteria,
        list_ids=list(auto_import.list_ids),
        tags=list(auto_import.tags),
        state=auto_import.state.value,
        state_reason=auto_import.state_reason,
        create_time=auto_import.created_on,
        update_time=auto_import.modified_on,
        version=auto_import.config_version,
        last_sync=auto_import.last_sync,
        running_sync=auto_import.running_sync,
        last_sync_start=auto_import.last_sync_began,
    )


def auto_import_message(row: ImportRow, sync_interval: float) -> imports_pb2.AutoImport:
    message = imports_pb2.AutoImport(
        name=import_name(row.account_id, row.import_id),
        service=row.service,
        display_name=row.display_name,
        external_account=row.external_account,
        list_ids=row.list_ids,
        tags=row.tags,
        state=row.state,
        state_reason=row.state_reason,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        etag=f'"{row.version}"',
    )
    criteria_message = getattr(message, row.service)
    for key, value in row.criteria.items():
        setattr(criteria_message, key, value)
    criteria_message.SetInParent()  # the oneof says which service, even with default criteria
    name = message.name
    if row.last_sync:
        message.last_sync.CopyFrom(sync_report_message(row.last_sync, name))
    if row.state == ImportState.ACTIVE.value:
        due = next_sync_due(row.create_time, row.last_sync_start, sync_interval)
        message.next_sync_time.CopyFrom(timestamp(due))
    return message


def sync_report_message(report: SyncReport, name: str) -> imports_pb2.SyncReport:
    message = imports_pb2.SyncReport(
        sync_id=report.sync_id,
        import_name=name,
        outcome=report.outcome.value,
        start_time=timestamp(report.start_time),
        skipped=[
            imports_pb2.SyncReport.SkippedContact(
                external_id=s.external_id, email=s.email, reason=s.reason
            )
            for s in report.skipped
        ],
        error=report.error,
        fetched=report.fetched,
        added=report.added,
        updated=report.updated,
        unchanged=report.unchanged,
        skipped_missing_email=report.skipped_missing_email,
        skipped_invalid_email=report.skipped_invalid_email,
        skipped_at_source=report.skipped_at_source,
        deferred=report.deferred,
        blocked_by_limit=report.blocked_by_limit,
        fields_created=report.fields_created,
        deleted_at_source=report.deleted_at_source,
    )
    if report.end_time is not None:
        message.end_time.CopyFrom(timestamp(report.end_time))
    return message


def due_import_message(due: DueImport, sync_interval: float) -> imports_pb2.DueImport:
    return imports_pb2.DueImport(
        name=import_name(due.account_id, due.import_id),
        next_sync_time=timestamp(
            next_sync_due(due.create_time, due.last_sync_start, sync_interval)
        ),
    )


def not_started_message(not_started: NotStarted, name: str) -> imports_pb2.SyncReport:
    """The reply to a scheduled TriggerSync that ran nothing: the import's latest report, and
    why nothing started."""
    message = imports_pb2.SyncReport(import_name=name, not_started=not_started.reason)
    if not_started.report:
        message.MergeFrom(sync_report_message(not_started.report, name))
    if not_started.next_sync_time is not None:
        message.next_sync_time.CopyFrom(timestamp(not_started.next_sync_time))
    return message


def contact_row_of(contact: Contact) -> ContactRow:
    return ContactRow(
        contact_id=str(contact.id),
        account_id=contact.account_id,
        email=contact.email,
        first_name=contact.first_name,
        last_name=contact.last_name,
        phone=contact.phone,
        status=contact.status.value,
        fields=dict(contact.fields),
        list_ids=list(contact.list_ids),
        tags=list(contact.tags),
        sources=list(contact.sources),
        create_time=contact.created_on,
        update_time=contact.modified_on,
    )


def contact_message(row: ContactRow) -> contacts_pb2.Contact:
    return contacts_pb2.Contact(
        id=row.contact_id,
        email=row.email,
        first_name=row.first_name,
        last_name=row.last_name,
        phone=row.phone,
        status=row.status,
        fields=row.fields,
        list_ids=row.list_ids,
        tags=row.tags,
        # Every CSV upload that touched the contact shows as one "csv" (dict: first seen order).
        source_imports=list(
            dict.fromkeys(
                CSV_SOURCE
                if source == CSV_SOURCE or source.startswith(CSV_SOURCE_PREFIX)
                else import_name(row.account_id, source)
                for source in row.sources
            )
        ),
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
    )


def csv_report_message(report: dict[str, Any]) -> contacts_pb2.CsvImportReport:
    return contacts_pb2.CsvImportReport(
        errors=[
            contacts_pb2.CsvRowError(row=e["row"], reason=e["reason"]) for e in report["errors"]
        ],
        formula_rows=report["formula_rows"],
        **{counter: report[counter] for counter in CSV_COUNTERS},
    )


def field_message(row: FieldRow) -> fields_pb2.CustomField:
    return fields_pb2.CustomField(
        id=row.field_id,
        title=row.title,
        personalization_tag=row.personalization_tag,
        service=row.service,
        create_time=timestamp(row.create_time),
    )


def history_event_message(event: Any) -> imports_pb2.ImportEvent:
    data = {
        key: ("(hidden)" if key in _SECRET else value)
        for key, value in vars(event).items()
        if key not in _NOT_DETAILS
    }
    details = struct_pb2.Struct()
    details.update(json.loads(json.dumps(data, default=str)))
    return imports_pb2.ImportEvent(
        version=event.originator_version,
        type=type(event).__qualname__.rpartition(".")[2],
        time=timestamp(event.timestamp),
        actor=getattr(event, "actor", ""),
        details=details,
    )


def service_message(source: Source, import_count: int) -> imports_pb2.ExternalService:
    return imports_pb2.ExternalService(
        id=source.id,
        display_name=source.display_name,
        description=source.description,
        fields=[
            imports_pb2.ServiceField(
                key=spec.key,
                label=spec.label,
                title=source.title_of(spec),
                personalization_tag=source.tag_of(spec),
            )
            for spec in source.fields
        ],
        import_count=import_count,
        criteria_description=source.criteria_description,
    )


def connection_check_message(findings: list[Finding]) -> imports_pb2.ConnectionCheck:
    return imports_pb2.ConnectionCheck(
        ok=all(f.ok for f in findings),
        findings=[
            imports_pb2.ConnectionCheck.Finding(check=f.check, ok=f.ok, detail=f.detail)
            for f in findings
        ],
    )


def preview_message(preview: Preview, more: bool) -> imports_pb2.ImportPreview:
    return imports_pb2.ImportPreview(
        records=preview.records,
        more=more,
        would_add=preview.count(Outcome.ADDED),
        would_update=preview.count(Outcome.UPDATED),
        unchanged=preview.count(Outcome.UNCHANGED),
        skipped_missing_email=preview.count(Outcome.MISSING_EMAIL),
        skipped_invalid_email=preview.count(Outcome.INVALID_EMAIL),
        skipped_at_source=preview.count(Outcome.SKIPPED_AT_SOURCE),
        blocked_by_limit=preview.count(Outcome.BLOCKED),
        deferred=preview.count(Outcome.DEFERRED),
        deleted_at_source=preview.deleted_at_source,
        skipped=[
            imports_pb2.SyncReport.SkippedContact(external_id=i, email=email, reason=reason)
            for i, email, reason in preview.skipped
        ],
        fields_to_create=[
            imports_pb2.ServiceField(
                key=f.key, title=f.title, personalization_tag=f.personalization_tag
            )
            for f in preview.fields_to_create
        ],
        sample=[
            imports_pb2.ImportPreview.Record(
                external_id=r.contact.external_id,
                email=r.contact.email,
                first_name=r.contact.first_name,
                last_name=r.contact.last_name,
                outcome=r.outcome.value,
                unsubscribed=r.contact.opted_out,
                fields=r.fields,
            )
            for r in preview.sample
        ],
    )


def account_message(account: Account) -> accounts_pb2.Account:
    return accounts_pb2.Account(
        account_id=account.account_id,
        plan=account.plan,
        contact_limit=account.contact_limit,
        contact_count=account.contact_count,
    )


def api_key_message(info: ApiKeyInfo) -> accounts_pb2.ApiKey:
    message = accounts_pb2.ApiKey(key_id=info.key_id, prefix=info.prefix, creator=info.creator)
    for name in ("create_time", "expire_time", "revoke_time"):
        moment = getattr(info, name)
        if moment is not None:
            getattr(message, name).CopyFrom(timestamp(moment))
    return message


def key_expiration_of(
    request: accounts_pb2.CreateApiKeyRequest,
) -> tuple[datetime | None, timedelta | None]:
    """(expire_time, ttl) of a CreateApiKeyRequest, None where not given."""
    which = request.WhichOneof("expiration")
    if which == "expire_time":
        return time_of(request.expire_time, "expire_time"), None
    if which == "ttl":
        try:
            return None, request.ttl.ToTimedelta()
        except (ValueError, OverflowError):  # beyond what a Duration may hold
            raise ValidationError.single("ttl", "is out of range (up to 10,000 years)") from None
    return None, None


def time_of(message: timestamp_pb2.Timestamp, field: str) -> datetime:
    """A Timestamp field as a datetime; one beyond what a Timestamp may hold is the caller's
    mistake (the fuzz of tests/test_bad_requests.py found INTERNAL for it)."""
    try:
        return message.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ValidationError.single(field, "is out of range (years 1 to 9999)") from None


def timestamp(t: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(t)
    return message

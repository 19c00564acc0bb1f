"""CSV imports: a file streamed in chunks, applied batch by batch.

The decisions are the domain's (domain/csv_import.py, on the syncs' per-contact rules); this
module reads the stream, loads what each batch needs, and saves the batch in one transaction
with everything it changed, deciding it again on fresh state when it meets a concurrent write
(a sync, another upload). Memory stays constant whatever the file's size: one batch of rows at
a time, and duplicates in the file are found through the contacts themselves (each carries every
CSV import that applied a row to it), not through a set of every email seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from domain.csv_file import CSV_SERVICE, CsvColumns, MalformedCsv, read_contacts
from domain.csv_import import (
    BATCH_ROWS,
    CsvImport,
    CsvImportState,
    CsvOptions,
    apply_batch,
)
from domain.custom_field import CustomField
from domain.errors import FieldViolation, ValidationError
from domain.sync import ExternalContact
from service.application import AutoImports, retry_on_conflict
from service.existing import contacts_by_email

Rows = list[tuple[int, ExternalContact]]


class CsvImporter:
    def __init__(self, app: AutoImports, batch_rows: int = BATCH_ROWS):
        self._app = app
        self._batch_rows = batch_rows

    def run(
        self, account_id: str, options: CsvOptions, chunks: Iterable[bytes], *, actor: str
    ) -> dict[str, Any]:
        """Imports the file and returns the import's report (CsvImport.report).

        Raises NotFound for an unknown account, and ValidationError for invalid options or a
        malformed file (naming the row, and how many rows were applied before it). `chunks` may
        raise ValidationError to refuse the stream itself (e.g. a message that is not a chunk):
        it reaches the caller saying how many rows were applied before it. A retried
        upload (same request_id) returns the first one's report, or its error; one that was
        interrupted carries on after the last batch it saved.
        """
        self._app.get_account(account_id)
        csv_import = self._start(account_id, options, actor)
        if csv_import.state is CsvImportState.RUNNING:
            csv_import = self._read(csv_import, chunks)
        if csv_import.state is CsvImportState.FAILED:
            raise _malformed(csv_import)
        return csv_import.report

    def _start(self, account_id: str, options: CsvOptions, actor: str) -> CsvImport:
        csv_import = CsvImport.start(account_id, options, actor=actor)
        try:
            self._app.save(csv_import)
        except IntegrityError:
            if not options.request_id:
                raise
            return self._get_import(csv_import.id)  # a retried upload
        return csv_import

    def _read(self, csv_import: CsvImport, chunks: Iterable[bytes]) -> CsvImport:
        fields: dict[str, CustomField] = {}  # the fields known to exist: they always will
        try:
            columns, contacts = read_contacts(_refusable(chunks))
            batch: Rows = []
            for row, contact in contacts:
                batch.append((row, contact))
                if len(batch) == self._batch_rows:
                    csv_import = self._save_batch(csv_import, columns, fields, batch, final=False)
                    if csv_import.state is not CsvImportState.RUNNING:
                        return csv_import  # ended by a concurrent upload with the same request_id
                    batch = []
            return self._save_batch(csv_import, columns, fields, batch, final=True)
        except MalformedCsv as e:
            return self._fail(csv_import, e)
        except _StreamRefused as e:
            # The batches saved stay saved: the import is left running, as when an upload is
            # cut off, so that a retry with the same request_id carries on after them.
            applied = _applied(self._get_import(csv_import.id))
            raise ValidationError(
                [FieldViolation(v.field, f"{v.description}; {applied}") for v in e.error.violations]
            ) from None

    def _save_batch(
        self,
        csv_import: CsvImport,
        columns: CsvColumns,
        known_fields: dict[str, CustomField],
        batch: Rows,
        *,
        final: bool,
    ) -> CsvImport:
        """Decides and saves one batch (the last one also completes the import); decides again
        on fresh state after a concurrent write."""
        app = self._app
        account_id = csv_import.account_id
        import_id = csv_import.id

        def attempt() -> CsvImport:
            csv_import = self._get_import(import_id)
            if csv_import.state is not CsvImportState.RUNNING:
                return csv_import
            account = app.get_account(account_id)
            fields: dict[str, CustomField | None] = {}
            for key in columns.declared:
                known = known_fields.get(key)
                fields[key] = known or app.find(CustomField.create_id(account_id, CSV_SERVICE, key))
            result = apply_batch(
                csv_import=csv_import,
                account=account,
                rows=batch,
                last_row=batch[-1][0] if batch else csv_import.last_row,
                contacts=contacts_by_email(
                    self._app,
                    account_id,
                    (c.email for row, c in batch if row > csv_import.last_row),
                ),
                fields=fields,
                declared=columns.declared,
            )
            if final:
                csv_import.complete()
            app.save(csv_import, account, *result.new_aggregates, *result.updated_contacts)
            known_fields.update({k: f for k, f in fields.items() if f is not None})
            return csv_import

        return retry_on_conflict(attempt, f"a batch of CSV import {import_id}")

    def _fail(self, csv_import: CsvImport, error: MalformedCsv) -> CsvImport:
        import_id = csv_import.id

        def attempt() -> CsvImport:
            csv_import = self._get_import(import_id)
            if csv_import.state is not CsvImportState.RUNNING:
                return csv_import
            csv_import.fail(error.row, error.reason)
            self._app.save(csv_import)
            return csv_import

        return retry_on_conflict(attempt, f"CSV import {import_id}")

    def _get_import(self, import_id: UUID) -> CsvImport:
        csv_import: object = self._app.repository.get(import_id)
        assert isinstance(csv_import, CsvImport)
        return csv_import


class _StreamRefused(Exception):
    def __init__(self, error: ValidationError):
        self.error = error


def _refusable(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks; the stream's own refusal told apart from every other ValidationError."""
    try:
        yield from chunks
    except ValidationError as e:
        raise _StreamRefused(e) from None


def _malformed(csv_import: CsvImport) -> ValidationError:
    """The failure of a CSV import as the caller sees it: the row, why, and what was applied."""
    assert csv_import.failure is not None
    row, reason = csv_import.failure["row"], csv_import.failure["reason"]
    return ValidationError.single("chunk", f"row {row}: {reason}; {_applied(csv_import)}")


def _applied(csv_import: CsvImport) -> str:
    """What the import applied so far: rows in a stream cannot be taken back."""
    applied = csv_import.report["rows"]
    if applied:
        return f"the {applied} rows up to row {csv_import.last_row} were applied, none after"
    return "no row was applied"

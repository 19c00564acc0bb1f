"""The CsvImport aggregate: one upload of a CSV file of contacts. Its history is the audit trail:
who uploaded it, what each batch of rows did (counts, and every row not applied with the
reason), and how it ended. And `apply_batch`, the rule for one batch of rows.

A batch is saved in one transaction with everything it changed (the import's BatchApplied, the
new and updated contacts, the fields created, the account's contact count), so a file is
applied batch by batch, never half a batch. The rules for each contact are the syncs' own
(`ContactIntake`), without the per-window cap and with the first row of an email winning.

First row wins, per file: of the rows of one file with one email, only the first is applied
(unless the contact limit blocks it: a blocked row marks nothing); every later one is the
file's duplicate, whatever other uploads or syncs did to the contact in between. Files do not
make each other's rows duplicates: each file's first row of an email is applied once, in the
order the batches are saved, and a later one's known values replace an earlier one's, as
between any two sources. The mark is the import's source on the contact, which keeps the
source of every CSV import that applied it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4, uuid5

from eventsourcing.domain import Aggregate, event

from domain.account import Account
from domain.auto_import import SkipReason
from domain.contact import CSV_SOURCE_PREFIX, Contact
from domain.csv_file import CSV_SERVICE, contact_without_controls, holds_formula
from domain.custom_field import CustomField
from domain.errors import Violations
from domain.ids import ID_NAMESPACE
from domain.import_settings import normalize_list_ids, normalize_tags
from domain.sync import ContactIntake, DeclaredField, ExternalContact, Outcome

MAX_ERRORS_IN_REPORT = 1000
MAX_FORMULA_ROWS_IN_REPORT = 100
BATCH_ROWS = 500  # rows per atomic save
_MAX_EMAIL_IN_REASON = 100

COUNTERS = (
    "rows",
    "added",
    "updated",
    "unchanged",
    "duplicates_in_file",
    "skipped_missing_email",
    "skipped_invalid_email",
    "blocked_by_limit",
    "fields_created",
    "cells_cleaned",  # values whose control characters were taken out
    "rows_with_formulas",  # rows with a value a spreadsheet would run, applied as written
)
_SKIP_COUNTERS = {
    SkipReason.MISSING_EMAIL: "skipped_missing_email",
    SkipReason.INVALID_EMAIL: "skipped_invalid_email",
    SkipReason.CONTACT_LIMIT: "blocked_by_limit",
}


class CsvImportState(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class CsvOptions:
    """What a caller asks of a CSV import, besides the file."""

    list_ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    request_id: str = ""


def new_csv_report() -> dict[str, Any]:
    return {**dict.fromkeys(COUNTERS, 0), "errors": [], "formula_rows": []}


def _new_tally() -> dict[str, Any]:
    """What the batch under way did so far. Plain JSON (snapshots hold it, empty); not state:
    the batch's event records it."""
    return {"counts": dict.fromkeys(COUNTERS, 0), "errors": [], "fields": [], "formula_rows": []}


class CsvImport(Aggregate):
    """One upload; implements the ContactRecorder protocol for the batch under way (the
    external id of a CSV contact is its row number)."""

    # Version 2: the report and the batch's tally count cells_cleaned and rows_with_formulas,
    # and list formula_rows. Snapshots of version 1 get them through upcast_v1_v2.
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["report"] = {**new_csv_report(), **state["report"]}
        state["_tally"] = {**_new_tally(), **state["_tally"]}
        state["_tally"]["counts"] = {**dict.fromkeys(COUNTERS, 0), **state["_tally"]["counts"]}

    class Started(Aggregate.Created):
        account_id: str
        request_id: str
        list_ids: list[str]
        tags: list[str]
        actor: str

    class BatchApplied(Aggregate.Event):
        first_row: int
        last_row: int
        counts: dict[str, int]
        errors: list[dict[str, Any]]  # {row, reason} of every row of the batch not applied
        fields_created: list[dict[str, str]]  # {field_id, key, title, personalization_tag}
        formula_rows: list[int]  # the first rows of the batch holding a formula

        class_version = 2  # version 1 had no formula_rows

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["formula_rows"] = []

    class Completed(Aggregate.Event):
        pass

    class Failed(Aggregate.Event):
        row: int
        reason: str

    @staticmethod
    def create_id(account_id: str, request_id: str) -> UUID:
        """A repeated request_id names the same import, so a retried upload is not applied twice."""
        if not request_id:
            return uuid4()
        return uuid5(ID_NAMESPACE, f"csv-import/{account_id}/{request_id}")

    @classmethod
    def start(cls, account_id: str, options: CsvOptions, *, actor: str) -> CsvImport:
        """Validates the options (ValidationError naming each bad one) and starts the import."""
        violations = Violations()
        list_ids = normalize_list_ids(options.list_ids, violations, "options.list_ids")
        tags = normalize_tags(options.tags, violations, "options.tags")
        violations.raise_if_any()
        return cls(
            account_id=account_id,
            request_id=options.request_id,
            list_ids=list_ids,
            tags=tags,
            actor=actor,
        )

    @event(Started)
    def __init__(
        self, *, account_id: str, request_id: str, list_ids: list[str], tags: list[str], actor: str
    ) -> None:
        self.account_id = account_id
        self.request_id = request_id
        self.list_ids = list(list_ids)
        self.tags = list(tags)
        self._state = CsvImportState.RUNNING.value  # the value: snapshots hold JSON
        self.last_row = 1  # the last row applied; the header is row 1
        self.report = new_csv_report()
        self.failure: dict[str, Any] | None = None
        self._tally = _new_tally()

    @property
    def state(self) -> CsvImportState:
        return CsvImportState(self._state)

    @property
    def source(self) -> str:
        """What the contacts it applies a row to carry in their sources, with every other CSV
        import's that did: the mark that makes a later row of the file a duplicate."""
        return f"{CSV_SOURCE_PREFIX}{self.id}"

    # -- the ContactRecorder protocol: the batch under way ---------------------------------
    def record_added(self, contact_id: str, email: str, external_id: str) -> None:
        self._tally["counts"]["added"] += 1

    def record_updated(
        self, contact_id: str, email: str, external_id: str, changed: list[str]
    ) -> None:
        self._tally["counts"]["updated"] += 1

    def record_skipped(self, external_id: str, email: str, reason: str) -> None:
        reason = SkipReason(reason)  # a CSV row has no source of its own to refuse it
        self._tally["counts"][_SKIP_COUNTERS[reason]] += 1
        shown = email[:_MAX_EMAIL_IN_REASON]
        text = {
            SkipReason.MISSING_EMAIL: "missing email",
            SkipReason.INVALID_EMAIL: f"invalid email {shown!r}",
            SkipReason.CONTACT_LIMIT: f"contact limit reached: {shown} was not added",
        }[reason]
        self._tally["errors"].append({"row": int(external_id), "reason": text})

    def record_field_created(self, field_id: str, key: str, title: str, tag: str) -> None:
        self._tally["counts"]["fields_created"] += 1
        self._tally["fields"].append(
            {"field_id": field_id, "key": key, "title": title, "personalization_tag": tag}
        )

    def record_duplicate(self, row: int, email: str) -> None:
        self._tally["counts"]["duplicates_in_file"] += 1
        shown = email[:_MAX_EMAIL_IN_REASON]
        self._tally["errors"].append(
            {"row": row, "reason": f"duplicate: {shown} is on an earlier row (the first one wins)"}
        )

    def record_row_read(self, row: int, *, cells_cleaned: int, formula: bool) -> None:
        self._tally["counts"]["cells_cleaned"] += cells_cleaned
        if formula:
            self._tally["counts"]["rows_with_formulas"] += 1
            if len(self._tally["formula_rows"]) < MAX_FORMULA_ROWS_IN_REPORT:
                self._tally["formula_rows"].append(row)

    # -- commands ---------------------------------------------------------------------------
    def record_batch(self, *, first_row: int, last_row: int, rows: int, unchanged: int) -> None:
        """Records the batch under way: rows `first_row` to `last_row`, `rows` of them with
        data (blank rows are not counted)."""
        tally = self._tally
        counts = {**tally["counts"], "rows": rows, "unchanged": unchanged}
        self._batch_applied(
            first_row=first_row,
            last_row=last_row,
            counts=counts,
            errors=tally["errors"],
            fields_created=tally["fields"],
            formula_rows=tally["formula_rows"],
        )

    @event(BatchApplied)
    def _batch_applied(
        self,
        first_row: int,
        last_row: int,
        counts: dict[str, int],
        errors: list[dict[str, Any]],
        fields_created: list[dict[str, str]],
        formula_rows: list[int],
    ) -> None:
        for name, count in counts.items():
            self.report[name] += count
        room = MAX_ERRORS_IN_REPORT - len(self.report["errors"])
        self.report["errors"].extend(errors[: max(0, room)])
        shown = self.report["formula_rows"]
        shown.extend(formula_rows[: max(0, MAX_FORMULA_ROWS_IN_REPORT - len(shown))])
        self.last_row = last_row
        self._tally = _new_tally()

    def complete(self) -> None:
        self._complete()

    @event(Completed)
    def _complete(self) -> None:
        self._state = CsvImportState.COMPLETED.value

    def fail(self, row: int, reason: str) -> None:
        self._fail(row=row, reason=reason)

    @event(Failed)
    def _fail(self, row: int, reason: str) -> None:
        self._state = CsvImportState.FAILED.value
        self.failure = {"row": row, "reason": reason}


@dataclass
class BatchResult:
    new_aggregates: list[Any]  # contacts and fields created
    updated_contacts: list[Contact]


def apply_batch(
    *,
    csv_import: CsvImport,
    account: Account,
    rows: list[tuple[int, ExternalContact]],
    last_row: int,
    contacts: dict[str, Contact | None],
    fields: dict[str, CustomField | None],
    declared: dict[str, DeclaredField],
) -> BatchResult:
    """Applies the rows of a batch that `csv_import` has not applied yet (an earlier attempt of a
    retried upload may have), in order, and records the batch. `contacts` holds the account's
    contact (or None) for each normalized email of the rows; `fields` the account's custom
    field (or None) for each declared key. The caller saves the result with the import and the
    account."""
    todo = [(row, contact) for row, contact in rows if row > csv_import.last_row]
    if not todo:
        return BatchResult([], [])
    intake = ContactIntake(
        account=account,
        recorder=csv_import,
        service=CSV_SERVICE,
        source=csv_import.source,
        list_ids=csv_import.list_ids,
        tags=csv_import.tags,
        contacts=contacts,
        fields=fields,
        declared=declared,
        budget=None,  # CSV imports are the uncapped way in: only the contact limit applies
        once_per_source=True,
    )
    for row, raw in todo:
        contact, cells_cleaned = contact_without_controls(raw)
        csv_import.record_row_read(row, cells_cleaned=cells_cleaned, formula=holds_formula(contact))
        if intake.take(contact) is Outcome.DUPLICATE:
            csv_import.record_duplicate(row, contact.email.strip())
    intake.finish()
    csv_import.record_batch(
        first_row=todo[0][0],
        last_row=max(last_row, todo[-1][0]),
        rows=len(todo),
        unchanged=intake.unchanged,
    )
    return BatchResult(intake.new_aggregates, intake.updated_contacts)

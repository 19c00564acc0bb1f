"""One page of a sync: the rules that turn what a source says into the account's contacts.

Everything a page changes is decided here, on aggregates the caller loaded, and saved by the
caller in one transaction: the import's sync events and cursor, the new and updated contacts,
the fields created, the account's contact count and the external account's window budget. A
save that meets a concurrent change fails as a whole, and the page is decided again.

The rules for one contact (validation, add or update or leave alone, the contact limit, the
budget, consent, fields, lists and tags) are `ContactIntake`'s, shared by syncs and CSV imports;
each records what it decided through the small `ContactRecorder` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from domain.account import Account
from domain.auto_import import AutoImport, SkipReason
from domain.contact import Contact, ContactValues, InvalidEmail, normalize_email
from domain.custom_field import CustomField
from domain.external_account import ExternalAccount
from domain.import_settings import Credentials
from domain.text import without_controls


@dataclass(frozen=True)
class ExternalContact:
    """One contact as the external service holds it, in the account's vocabulary."""

    external_id: str
    email: str
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    # The source says this person opted out of email: a new contact is added unsubscribed.
    opted_out: bool = False
    # Values of the connector's declared fields, by field key.
    fields: dict[str, str] = field(default_factory=dict)
    # A cursor that resumes right after this contact, when the source can resume inside a page
    # (e.g. a timestamp with an id tie-breaker); None when it can only resume after the page.
    position: str | None = None
    # The source deleted this contact (a tombstone): it stays in the account, and is counted.
    deleted: bool = False
    # The source's own reason not to import this record (e.g. "pending: an unconfirmed
    # double opt-in"), or "": skipped with that reason, and counted as skipped at the source.
    skip_reason: str = ""


@dataclass(frozen=True)
class ContactPage:
    contacts: list[ExternalContact]
    cursor: str  # resumes after the whole page
    has_more: bool
    # New credentials the connector obtained while reading this page (an OAuth refresh): saved
    # with the page, so that the next sync starts with them.
    credentials: Credentials | None = None
    # Fields the source declares as it reads, beside its fixed ones (e.g. the merge fields of
    # one Mailchimp audience): created like them when a contact first has a value.
    declared_fields: tuple[DeclaredField, ...] = ()

    def fields_beside(self, fixed: dict[str, DeclaredField]) -> dict[str, DeclaredField]:
        """The fields its contacts may fill: the source's `fixed` ones, and those it declares."""
        return fixed | {spec.key: spec for spec in self.declared_fields}


@dataclass(frozen=True)
class DeclaredField:
    """A connector field as the account names it."""

    key: str
    title: str
    personalization_tag: str


@dataclass
class PageResult:
    new_aggregates: list[Any]  # contacts and fields created: to save with the rest
    updated_contacts: list[Contact]
    capped: bool  # the window's budget ran out: the rest waits for the next window


class ContactRecorder(Protocol):
    """Where the decisions about contacts are recorded: an AutoImport's sync events, or the
    tally of a CsvImport's batch. `external_id` is the source's id of the contact."""

    def record_added(self, contact_id: str, email: str, external_id: str) -> None: ...

    def record_updated(
        self, contact_id: str, email: str, external_id: str, changed: list[str]
    ) -> None: ...

    def record_skipped(self, external_id: str, email: str, reason: str) -> None:
        """`reason`: a SkipReason, or the source's own reason (`ExternalContact.skip_reason`)."""

    def record_field_created(self, field_id: str, key: str, title: str, tag: str) -> None: ...


class Outcome(StrEnum):
    """What happened to one external contact."""

    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"  # once-per-source intakes: this source already applied the email
    MISSING_EMAIL = "missing email"
    INVALID_EMAIL = "invalid email"
    SKIPPED_AT_SOURCE = "skipped at the source"
    BLOCKED = "blocked"  # a new contact, and the account is at its limit
    DEFERRED = "deferred"  # the budget ran out: nothing recorded, the caller stops here


class ContactIntake:
    """Applies what one source says to the account's contacts, one contact at a time.

    `contacts` holds the account's contact (or None) for each normalized email the caller will
    pass; `fields` the account's custom field (or None) for each declared field key. Both gain
    what the intake creates. `budget`: how many contacts may be added or updated, None for no
    cap. `once_per_source`: each email is applied once per source (a CSV file: the first row
    wins); a contact that already carries the source is a duplicate, and gaining the source is
    bookkeeping, not a change (the contact is saved, counted unchanged).

    The caller saves `new_aggregates` and `updated_contacts` with the account, after `finish()`.
    """

    def __init__(
        self,
        *,
        account: Account,
        recorder: ContactRecorder,
        service: str,
        source: str,
        list_ids: list[str],
        tags: list[str],
        contacts: dict[str, Contact | None],
        fields: dict[str, CustomField | None],
        declared: dict[str, DeclaredField],
        budget: int | None = None,
        once_per_source: bool = False,
    ):
        self._account = account
        self._recorder = recorder
        self._service = service
        self._source = source
        self._list_ids = list_ids
        self._tags = tags
        self._contacts = contacts
        self._fields = fields
        self._declared = declared
        self._budget = budget
        self._once_per_source = once_per_source
        self._capacity = account.capacity
        self._created: dict[str, Contact] = {}
        self._updated: dict[str, Contact] = {}
        self._new_fields: list[CustomField] = []
        self.blocked = 0
        self.unchanged = 0

    @property
    def new_aggregates(self) -> list[Any]:
        return [*self._created.values(), *self._new_fields]

    @property
    def updated_contacts(self) -> list[Contact]:
        return list(self._updated.values())

    @property
    def budget_used(self) -> int:
        """Contacts added or updated (each counted once, however many times it changed)."""
        return len(self._created) + len(self._updated)

    def take(self, contact: ExternalContact) -> Outcome:
        email = contact.email.strip()
        if contact.skip_reason:
            self._recorder.record_skipped(contact.external_id, email, contact.skip_reason)
            return Outcome.SKIPPED_AT_SOURCE
        if not email:
            self._recorder.record_skipped(contact.external_id, "", SkipReason.MISSING_EMAIL)
            return Outcome.MISSING_EMAIL
        try:
            email = normalize_email(email)
        except InvalidEmail:
            self._recorder.record_skipped(contact.external_id, email, SkipReason.INVALID_EMAIL)
            return Outcome.INVALID_EMAIL
        values = _values_of(contact, self._declared)
        existing = self._created.get(email) or self._contacts.get(email)
        if existing is None:
            return self._add(contact, email, values)
        return self._update(contact, email, values, existing)

    def finish(self) -> None:
        """Counts the new contacts on the account (saved with them: the limit holds)."""
        self._account.add_contacts(len(self._created))

    def _add(self, contact: ExternalContact, email: str, values: ContactValues) -> Outcome:
        if self._capacity == 0:
            self.blocked += 1
            self._recorder.record_skipped(contact.external_id, email, SkipReason.CONTACT_LIMIT)
            return Outcome.BLOCKED
        if self._budget == 0:
            return Outcome.DEFERRED
        self._ensure_fields(values)
        new = Contact.add(
            self._account.account_id,
            email,
            values,
            list_ids=self._list_ids,
            tags=self._tags,
            source=self._source,
        )
        self._created[email] = new
        self._spend()
        self._capacity -= 1
        self._recorder.record_added(str(new.id), email, contact.external_id)
        return Outcome.ADDED

    def _update(
        self, contact: ExternalContact, email: str, values: ContactValues, existing: Contact
    ) -> Outcome:
        if self._once_per_source and self._source in existing.sources:
            return Outcome.DUPLICATE
        changes = existing.changes_from(
            values, list_ids=self._list_ids, tags=self._tags, source=self._source
        )
        if self._once_per_source and changes.keys() <= {"sources"}:
            existing.merge(changes, source=self._source)  # marks it, so later rows are duplicates
            if email not in self._created:
                self._updated[email] = existing
            self.unchanged += 1
            return Outcome.UNCHANGED
        if not changes:
            self.unchanged += 1
            return Outcome.UNCHANGED
        if self._budget == 0:
            return Outcome.DEFERRED
        self._ensure_fields(values)
        existing.merge(changes, source=self._source)
        if email not in self._created:
            self._updated[email] = existing
        self._spend()
        self._recorder.record_updated(
            str(existing.id),
            email,
            contact.external_id,
            sorted(name.lstrip("_") for name in changes),
        )
        return Outcome.UPDATED

    def _spend(self) -> None:
        if self._budget is not None:
            self._budget -= 1

    def _ensure_fields(self, values: ContactValues) -> None:
        for spec in self._declared.values():
            if values.fields.get(spec.personalization_tag) and self._fields.get(spec.key) is None:
                custom_field = CustomField(
                    account_id=self._account.account_id,
                    service=self._service,
                    key=spec.key,
                    title=spec.title,
                    personalization_tag=spec.personalization_tag,
                )
                self._fields[spec.key] = custom_field
                self._new_fields.append(custom_field)
                self._recorder.record_field_created(
                    str(custom_field.id), spec.key, spec.title, spec.personalization_tag
                )


def sync_page(
    *,
    auto_import: AutoImport,
    account: Account,
    external: ExternalAccount,
    window: int,
    page: ContactPage,
    contacts: dict[str, Contact | None],
    fields: dict[str, CustomField | None],
    declared: dict[str, DeclaredField],
) -> PageResult:
    """Processes `page` in order, until its end or until the budget of the window runs out.

    `contacts` holds the account's contact (or None) for each normalized email of the page;
    `fields` the account's custom field (or None) for each declared field key.
    """
    intake = ContactIntake(
        account=account,
        recorder=auto_import,
        service=auto_import.service,
        source=str(auto_import.id),
        list_ids=auto_import.list_ids,
        tags=auto_import.tags,
        contacts=contacts,
        fields=fields,
        declared=declared,
        budget=external.remaining(window),
    )
    cursor = auto_import.cursor or ""
    processed = 0
    capped = False
    for contact in page.contacts:
        if contact.deleted:
            # The account keeps its contact: deleting at the source is not unsubscribing, and
            # the person may still be on the account's lists for other reasons.
            auto_import.record_deleted_at_source(contact.external_id)
        elif intake.take(contact) is Outcome.DEFERRED:
            capped = True
            break
        processed += 1
        if contact.position is not None:
            cursor = contact.position

    if not capped:
        cursor = page.cursor
    intake.finish()
    external.use(window, intake.budget_used)
    if intake.blocked:
        auto_import.record_limit_reached(intake.blocked)
    if capped:
        auto_import.record_capped(len(page.contacts) - processed)
    # Only what was decided counts as fetched: the deferred rest of the page is fetched again,
    # and counted then, by the next sync (which resumes after the last contact decided).
    auto_import.advance_cursor(cursor, fetched=processed, unchanged=intake.unchanged)
    return PageResult(
        new_aggregates=intake.new_aggregates,
        updated_contacts=intake.updated_contacts,
        capped=capped,
    )


def _values_of(contact: ExternalContact, declared: dict[str, DeclaredField]) -> ContactValues:
    """What the contact's values are stored as: trimmed, without control characters (a
    source's record may hold any: see domain/text.py)."""
    fields = {key: _clean(value) for key, value in contact.fields.items() if key in declared}
    return ContactValues(
        first_name=_clean(contact.first_name),
        last_name=_clean(contact.last_name),
        phone=_clean(contact.phone),
        fields={declared[key].personalization_tag: value for key, value in fields.items() if value},
        opted_out=contact.opted_out,
    )


def _clean(value: str) -> str:
    return without_controls(value)[0].strip()


@dataclass(frozen=True)
class PreviewedContact:
    """One record of a preview, as its sync would decide it."""

    contact: ExternalContact
    outcome: Outcome
    fields: dict[str, str]  # its values of the declared fields, by personalization tag


@dataclass
class Preview:
    """What a sync would do with one page, decided as a sync decides it and saved nowhere."""

    records: int = 0
    counts: dict[Outcome, int] = field(default_factory=dict)
    deleted_at_source: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # id, email, reason
    fields_to_create: list[DeclaredField] = field(default_factory=list)
    sample: list[PreviewedContact] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return self.counts.get(outcome, 0)


class _PreviewTally:
    """A ContactRecorder that only takes notes."""

    def __init__(self, preview: Preview, declared: dict[str, DeclaredField]) -> None:
        self._preview = preview
        self._declared = declared

    def record_added(self, contact_id: str, email: str, external_id: str) -> None:
        pass  # counted by its outcome

    def record_updated(
        self, contact_id: str, email: str, external_id: str, changed: list[str]
    ) -> None:
        pass

    def record_skipped(self, external_id: str, email: str, reason: str) -> None:
        if len(self._preview.skipped) < MAX_SKIPPED_IN_PREVIEW:
            self._preview.skipped.append((external_id, email, str(reason)))

    def record_field_created(self, field_id: str, key: str, title: str, tag: str) -> None:
        self._preview.fields_to_create.append(self._declared[key])


MAX_SKIPPED_IN_PREVIEW = 100


def preview_page(
    *,
    service: str,
    account: Account,
    budget: int,
    page: ContactPage,
    list_ids: list[str],
    tags: list[str],
    contacts: dict[str, Contact | None],
    fields: dict[str, CustomField | None],
    declared: dict[str, DeclaredField],
    sample_size: int,
) -> Preview:
    """What a sync of `page` would do, by the rules a sync follows (`ContactIntake`), on
    aggregates the caller loaded and must not save: how many records would be added, updated,
    left as they are, skipped and why, blocked at the contact limit, or deferred past the
    window's `budget`, and which fields would be created, with the first `sample_size` records
    as they would be decided."""
    preview = Preview(records=len(page.contacts))
    intake = ContactIntake(
        account=account,
        recorder=_PreviewTally(preview, declared),
        service=service,
        source="preview",
        list_ids=list_ids,
        tags=tags,
        contacts=contacts,
        fields=fields,
        declared=declared,
        budget=budget,
    )
    deferred = False
    for contact in page.contacts:
        if contact.deleted:
            preview.deleted_at_source += 1
            continue
        # Past the budget, the rest of the page waits for the next window.
        outcome = Outcome.DEFERRED if deferred else intake.take(contact)
        deferred = outcome is Outcome.DEFERRED
        preview.counts[outcome] = preview.count(outcome) + 1
        if len(preview.sample) < sample_size:
            values = _values_of(contact, declared).fields
            preview.sample.append(PreviewedContact(contact, outcome, values))
    return preview

"""One page of a sync: the rules that turn what a source says into the account's contacts.

Everything a page changes is decided here, on aggregates the caller loaded, and saved by the
caller in one transaction: the import's sync events and cursor, the new and updated contacts,
the fields created, the account's contact count and the external account's window budget. A
save that meets a concurrent change fails as a whole, and the page is decided again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.account import Account
from domain.auto_import import AutoImport, SkipReason
from domain.contact import Contact, ContactValues, InvalidEmail, normalize_email
from domain.custom_field import CustomField
from domain.external_account import ExternalAccount


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


@dataclass(frozen=True)
class ContactPage:
    contacts: list[ExternalContact]
    cursor: str  # resumes after the whole page
    has_more: bool


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
    budget = external.remaining(window)
    capacity = account.capacity
    source = str(auto_import.id)
    created: dict[str, Contact] = {}
    updated: dict[str, Contact] = {}
    new_fields: list[CustomField] = []
    cursor = auto_import.cursor or ""
    blocked = unchanged = processed = 0
    capped = False

    def ensure_fields(values: ContactValues) -> None:
        for spec in declared.values():
            if values.fields.get(spec.personalization_tag) and fields.get(spec.key) is None:
                custom_field = CustomField(
                    account_id=account.account_id,
                    service=auto_import.service.value,
                    key=spec.key,
                    title=spec.title,
                    personalization_tag=spec.personalization_tag,
                )
                fields[spec.key] = custom_field
                new_fields.append(custom_field)
                auto_import.record_field_created(
                    str(custom_field.id), spec.key, spec.title, spec.personalization_tag
                )

    for contact in page.contacts:
        email = contact.email.strip()
        if not email:
            auto_import.record_skipped(contact.external_id, "", SkipReason.MISSING_EMAIL)
        else:
            try:
                email = normalize_email(email)
            except InvalidEmail:
                auto_import.record_skipped(contact.external_id, email, SkipReason.INVALID_EMAIL)
            else:
                values = _values_of(contact, declared)
                existing = created.get(email) or contacts.get(email)
                if existing is None:
                    if capacity == 0:
                        blocked += 1
                        auto_import.record_skipped(
                            contact.external_id, email, SkipReason.CONTACT_LIMIT
                        )
                    elif budget == 0:
                        capped = True
                        break
                    else:
                        ensure_fields(values)
                        new = Contact.add(
                            account.account_id,
                            email,
                            values,
                            list_ids=auto_import.list_ids,
                            tags=auto_import.tags,
                            source=source,
                        )
                        created[email] = new
                        budget -= 1
                        capacity -= 1
                        auto_import.record_added(str(new.id), email, contact.external_id)
                else:
                    changes = existing.changes_from(
                        values, list_ids=auto_import.list_ids, tags=auto_import.tags, source=source
                    )
                    if not changes:
                        unchanged += 1
                    elif budget == 0:
                        capped = True
                        break
                    else:
                        ensure_fields(values)
                        existing.merge(changes, source=source)
                        if email not in created:
                            updated[email] = existing
                        budget -= 1
                        auto_import.record_updated(
                            str(existing.id),
                            email,
                            contact.external_id,
                            sorted(name.lstrip("_") for name in changes),
                        )
        processed += 1
        if contact.position is not None:
            cursor = contact.position

    if not capped:
        cursor = page.cursor
    account.add_contacts(len(created))
    external.use(window, len(created) + len(updated))
    if blocked:
        auto_import.record_limit_reached(blocked)
    if capped:
        auto_import.record_capped(len(page.contacts) - processed)
    auto_import.advance_cursor(cursor, fetched=len(page.contacts), unchanged=unchanged)
    return PageResult(
        new_aggregates=[*created.values(), *new_fields],
        updated_contacts=list(updated.values()),
        capped=capped,
    )


def _values_of(contact: ExternalContact, declared: dict[str, DeclaredField]) -> ContactValues:
    return ContactValues(
        first_name=contact.first_name.strip(),
        last_name=contact.last_name.strip(),
        phone=contact.phone.strip(),
        fields={
            declared[key].personalization_tag: value.strip()
            for key, value in contact.fields.items()
            if key in declared and value.strip()
        },
        opted_out=contact.opted_out,
    )

"""The Contact aggregate: one per normalized email per account. Its id is derived from both, so
creating it is also claiming the email: two syncs racing to add one email cannot both succeed."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from eventsourcing.domain import Aggregate, event

from domain.ids import ID_NAMESPACE

# A CSV import's source on a contact is "csv:<csv import id>". A contact keeps every one that
# applied a row to it: each marks that its import applied the email, so that a later row of
# that file is a duplicate even when other uploads touched the contact in between. (Contacts
# saved before kept only the last one; their events load as they are.)
CSV_SOURCE_PREFIX = "csv:"


class ContactStatus(StrEnum):
    ACTIVE = "ACTIVE"
    UNSUBSCRIBED = "UNSUBSCRIBED"


class InvalidEmail(ValueError):
    """The address is not a valid email; the message says why."""


# A plain ASCII local part (RFC 5322 dot-atom), the form of nearly every address: for it,
# email-validator's verdict depends on the domain alone (and on the length, checked below).
_PLAIN_LOCAL_PART = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
)
_MAX_ADDRESS = 254  # in UTF-8 bytes, as email-validator counts (RFC 3696 errata 1690)


@functools.lru_cache(maxsize=1024)  # a batch checks each email twice: load, then decide
def normalize_email(raw: str) -> str:
    """The one spelling of an address that identifies a contact: validated without DNS lookups
    (none in the request path), Unicode domain, all lower case (mailboxes treat case alike).

    Exactly email-validator's verdict, faster: validating the domain is most of its cost, and a
    list holds few domains, so a plain local part is checked here and its domain once
    (tests/test_domain_contact.py checks the two agree for any input)."""
    address = raw.strip()
    local, at, domain = address.partition("@")
    if at and len(address) <= _MAX_ADDRESS and _PLAIN_LOCAL_PART.fullmatch(local):
        forms = _domain_forms(domain)
        if forms is not None:
            ascii_domain, unicode_domain = forms
            normalized = f"{local}@{unicode_domain}"
            longest = max(
                len(address.encode()), len(normalized.encode()), len(ascii_domain) + 1 + len(local)
            )
            if longest <= _MAX_ADDRESS:
                return normalized.lower()
    return _checked(address).normalized.lower()  # anything else, and every error's message


@functools.lru_cache(maxsize=4096)
def _domain_forms(domain: str) -> tuple[str, str] | None:
    """The domain's ASCII and Unicode forms, or None if it is not valid."""
    try:
        checked = _checked("a@" + domain)
    except InvalidEmail:
        return None
    return checked.ascii_domain, checked.domain


def _checked(address: str) -> ValidatedEmail:
    try:
        return validate_email(address, check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidEmail(str(e)) from None


@functools.lru_cache(maxsize=2048)  # a batch derives each id twice: to load, then to add
def _contact_id(account_id: str, email: str) -> UUID:
    return uuid5(ID_NAMESPACE, f"contact/{account_id}/{email}")


@dataclass(frozen=True)
class ContactValues:
    """What a source says about a contact. Empty strings mean "not known": they never erase."""

    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    # Custom field values by personalization tag.
    fields: dict[str, str] = field(default_factory=dict)
    opted_out: bool = False


class Contact(Aggregate):
    @staticmethod
    def create_id(account_id: str, email: str) -> UUID:
        return _contact_id(account_id, email)

    class Created(Aggregate.Created):
        account_id: str
        email: str
        first_name: str
        last_name: str
        phone: str
        fields: dict[str, str]
        list_ids: list[str]
        tags: list[str]
        status: str
        source: str

    class Updated(Aggregate.Event):
        changes: dict[str, Any]  # only what changed, by attribute name
        source: str

    class Unsubscribed(Aggregate.Event):
        actor: str

    @classmethod
    def add(
        cls,
        account_id: str,
        email: str,
        values: ContactValues,
        *,
        list_ids: list[str],
        tags: list[str],
        source: str,
    ) -> Contact:
        """A new contact. One whose source says it opted out of email starts unsubscribed."""
        status = ContactStatus.UNSUBSCRIBED if values.opted_out else ContactStatus.ACTIVE
        return cls(
            account_id=account_id,
            email=email,
            first_name=values.first_name,
            last_name=values.last_name,
            phone=values.phone,
            fields={tag: value for tag, value in values.fields.items() if value},
            list_ids=list(list_ids),
            tags=list(tags),
            status=status.value,
            source=source,
        )

    @event(Created)
    def __init__(
        self,
        *,
        account_id: str,
        email: str,
        first_name: str,
        last_name: str,
        phone: str,
        fields: dict[str, str],
        list_ids: list[str],
        tags: list[str],
        status: str,
        source: str,
    ) -> None:
        self.account_id = account_id
        self.email = email
        self.first_name = first_name
        self.last_name = last_name
        self.phone = phone
        self.fields = dict(fields)
        self.list_ids = list(list_ids)
        self.tags = list(tags)
        self._status = status  # the value: snapshots hold JSON, which has no enums
        self.sources = [source]

    @property
    def status(self) -> ContactStatus:
        return ContactStatus(self._status)

    def changes_from(
        self, values: ContactValues, *, list_ids: list[str], tags: list[str], source: str
    ) -> dict[str, Any]:
        """What merging a source's view into this contact would change. Known values replace
        old ones; lists, tags and sources only grow (CSV imports' sources too: see
        CSV_SOURCE_PREFIX); an opt-out at the source unsubscribes, and nothing an import says
        ever makes a contact active."""
        changes: dict[str, Any] = {}
        for name in ("first_name", "last_name", "phone"):
            value = getattr(values, name)
            if value and value != getattr(self, name):
                changes[name] = value
        fields = {tag: v for tag, v in values.fields.items() if v and self.fields.get(tag) != v}
        if fields:
            changes["fields"] = {**self.fields, **fields}
        for name, additions in (("list_ids", list_ids), ("tags", tags), ("sources", [source])):
            current = getattr(self, name)
            new = [item for item in additions if item not in current]
            if new:
                changes[name] = current + new
        if values.opted_out and self.status is ContactStatus.ACTIVE:
            changes["_status"] = ContactStatus.UNSUBSCRIBED.value
        return changes

    def merge(self, changes: dict[str, Any], *, source: str) -> None:
        if changes:
            self._update(changes=changes, source=source)

    @event(Updated)
    def _update(self, changes: dict[str, Any], source: str) -> None:
        for name, value in changes.items():
            setattr(self, name, value)

    def unsubscribe(self, *, actor: str) -> None:
        if self.status is not ContactStatus.UNSUBSCRIBED:
            self._unsubscribe(actor=actor)

    @event(Unsubscribed)
    def _unsubscribe(self, actor: str) -> None:
        self._status = ContactStatus.UNSUBSCRIBED.value

"""What every connector provides: its service's description, and contacts read page by page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from domain.sources import Criteria, ServiceId, field_title, personalization_tag


@dataclass(frozen=True)
class FieldSpec:
    """A value the connector reads into a custom field of the account (fixed, never mapped)."""

    key: str
    label: str


@dataclass(frozen=True)
class ServiceDescription:
    id: ServiceId
    display_name: str
    fields: tuple[FieldSpec, ...]
    criteria_description: str

    def title_of(self, spec: FieldSpec) -> str:
        return field_title(self.display_name, spec.label)

    def tag_of(self, spec: FieldSpec) -> str:
        return personalization_tag(self.display_name, spec.label)


@dataclass(frozen=True)
class ExternalContact:
    """One contact as the external service holds it, already mapped to the account's vocabulary."""

    external_id: str
    email: str
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    # The source says this person opted out of email: a new contact is added unsubscribed.
    opted_out: bool = False
    # Values of the connector's declared fields, keyed by FieldSpec.key.
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContactPage:
    contacts: list[ExternalContact]
    # Where the next read resumes once every contact of this page is processed; opaque to callers.
    cursor: str
    has_more: bool


class Connector(Protocol):
    """Reads one external account's contacts that match the criteria, after a cursor."""

    description: ServiceDescription

    def fetch_page(self, criteria: Criteria, cursor: str | None) -> ContactPage: ...

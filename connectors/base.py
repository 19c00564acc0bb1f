"""What every connector provides: its service's description, and contacts read page by page."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from domain.auto_import import AutoImport
from domain.sources import Criteria, ServiceId, field_title, personalization_tag
from domain.sync import ContactPage, DeclaredField


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

    def declared_fields(self) -> dict[str, DeclaredField]:
        return {
            spec.key: DeclaredField(spec.key, self.title_of(spec), self.tag_of(spec))
            for spec in self.fields
        }


def text_of(value: Any) -> str:
    """A JSON value as text: "" for null (APIs send null for an empty field)."""
    return "" if value is None else str(value)


class ConnectorError(Exception):
    """A failure talking to the external service; the message says what a person can do."""


class RetryableError(ConnectorError):
    """Worth trying again later: rate limited, unavailable, timed out."""


DEADLINE_PASSED = "stopped at the caller's deadline: the next sync resumes where this one stopped"


class DeadlinePassed(RetryableError):
    """The caller of the sync stops waiting: the sync stops, and the next one resumes."""

    def __init__(self, message: str = DEADLINE_PASSED):
        super().__init__(message)


def seconds_left(deadline: float | None) -> float | None:
    """Seconds left before `deadline` (time.monotonic()), None when there is none."""
    return None if deadline is None else deadline - time.monotonic()


def check_deadline(deadline: float | None) -> None:
    left = seconds_left(deadline)
    if left is not None and left <= 0:
        raise DeadlinePassed()


class AuthError(ConnectorError):
    """The service rejected the credentials: the account must be reconnected."""


class ReauthRequired(AuthError):
    """The service revoked the import's grant (e.g. OAuth invalid_grant): only a person who
    reconnects the account can fix it, so the import waits in NEEDS_REAUTH until then."""


class PermanentError(ConnectorError):
    """A request the service will keep refusing (e.g. a criteria it does not know)."""


class Connector(Protocol):
    """Reads one external account's contacts that match an import's criteria, in a stable order
    (the order the cursor follows), page by page."""

    # How far behind the present the source's search may be: a sync reads only contacts changed
    # before its start minus this, so that none changed meanwhile is passed over.
    lag: timedelta

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
        """The contacts after `cursor` ("" for the beginning) changed at or before `until`.
        By `deadline` (time.monotonic(), None for none) it returns or raises DeadlinePassed:
        its requests are cut to it (connectors/http.py).

        Each contact's `position` is a cursor that, passed back here (by a later sync, with a
        later `until`), resumes right after that contact: a sync stopped by a cap resumes after
        the last contact it processed, so each record is read and counted once per pass over
        the source. A position never passes over a contact not yet returned (one sharing its
        timestamp, or changed meanwhile); None when the connector cannot resume inside a page.
        """
        ...

    def close(self) -> None:
        """Releases what the connector holds (e.g. its HTTP connections)."""
        ...


# Builds the connector that reads an import's external account with its credentials.
ConnectorFactory = Callable[[AutoImport], Connector]

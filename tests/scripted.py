"""A scripted external source for sync tests: an in-memory account of contacts, and a connector
that pages through it like the real APIs do (ordered by update time with an id tie-breaker,
a cursor that resumes after any contact, an upper time bound)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import Connector, ConnectorError
from domain.auto_import import AutoImport, Credentials
from domain.sources import Criteria
from domain.sync import ContactPage, ExternalContact

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class SourceContact:
    external_id: str
    email: str
    updated_at: datetime
    first_name: str = ""
    last_name: str = ""
    opted_out: bool = False
    fields: dict[str, str] = field(default_factory=dict)
    deleted: bool = False


class ScriptedSource:
    """The contacts of one external account; tests edit it between (or during) syncs."""

    def __init__(self) -> None:
        self.contacts: dict[str, SourceContact] = {}
        self.lock = threading.Lock()
        self.requests = 0

    def put(self, external_id: str, email: str, updated_at: datetime = T0, **values: Any) -> None:
        with self.lock:
            self.contacts[external_id] = SourceContact(external_id, email, updated_at, **values)

    def touch(self, external_id: str, updated_at: datetime, **values: Any) -> None:
        with self.lock:
            contact = self.contacts[external_id]
            self.contacts[external_id] = replace(contact, updated_at=updated_at, **values)

    def delete(self, external_id: str, updated_at: datetime) -> None:
        """Leaves a tombstone, as Google's sync results do: no email, deleted."""
        self.touch(external_id, updated_at, email="", deleted=True)

    def fill(self, count: int, updated_at: datetime = T0, prefix: str = "c") -> None:
        for n in range(count):
            self.put(f"{prefix}{n:06d}", f"{prefix}{n:06d}@example.com", updated_at)


def _position(contact: SourceContact) -> str:
    return f"{contact.updated_at.isoformat()}|{contact.external_id}"


def _key(position: str) -> tuple[datetime, str]:
    time, _, external_id = position.partition("|")
    return datetime.fromisoformat(time), external_id


class ScriptedConnector:
    """Reads a ScriptedSource page by page. `before_page(n)` runs before the n-th page (from 0),
    e.g. to edit the source mid-sync, block, or raise. `refreshed`: credentials the connector
    obtained (as an OAuth refresh does) while reading its first page."""

    def __init__(
        self,
        source: ScriptedSource,
        page_size: int = 100,
        before_page: Callable[[int], None] | None = None,
        lag: timedelta = timedelta(0),
        refreshed: Credentials | None = None,
    ):
        self.source = source
        self.refreshed = refreshed
        self.page_size = page_size
        self.before_page = before_page
        self.lag = lag
        self.pages = 0

    def close(self) -> None:
        pass  # holds nothing

    def fetch_page(self, criteria: Criteria, cursor: str, until: datetime) -> ContactPage:
        if self.before_page is not None:
            self.before_page(self.pages)
        self.pages += 1
        with self.source.lock:
            self.source.requests += 1
            after = _key(cursor) if cursor else None
            ordered = sorted(
                (c for c in self.source.contacts.values() if c.updated_at <= until),
                key=lambda c: (c.updated_at, c.external_id),
            )
            remaining = [
                c for c in ordered if after is None or (c.updated_at, c.external_id) > after
            ]
            page = remaining[: self.page_size]
        contacts = [
            ExternalContact(
                external_id=c.external_id,
                email=c.email,
                first_name=c.first_name,
                last_name=c.last_name,
                opted_out=c.opted_out,
                fields=dict(c.fields),
                position=_position(c),
                deleted=c.deleted,
            )
            for c in page
        ]
        credentials, self.refreshed = self.refreshed, None
        return ContactPage(
            contacts=contacts,
            cursor=contacts[-1].position if contacts else cursor,  # type: ignore[arg-type]
            has_more=len(remaining) > len(page),
            credentials=credentials,
        )


class ScriptedConnectors:
    """A connector factory: one scripted source per external account."""

    def __init__(self, **options: Any) -> None:
        self.sources: dict[str, ScriptedSource] = {}
        self.options = options

    def source(self, external_account: str) -> ScriptedSource:
        return self.sources.setdefault(external_account, ScriptedSource())

    def __call__(self, auto_import: AutoImport) -> Connector:
        return ScriptedConnector(self.source(auto_import.external_account), **self.options)


class SourceDown(ConnectorError):
    pass

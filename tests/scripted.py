"""A scripted external source for sync tests: an in-memory account of contacts, and a connector
that pages through it like the real APIs do (ordered by update time with an id tie-breaker,
a cursor that resumes after any contact, an upper time bound).

Options of the connector, off by default: `positions=False` gives contacts no position, as the
real connectors do today (a capped page is then read again from its start); `apply_criteria`
keeps only the contacts that match the import's criteria after reading a page, as Shopify's
connector does, while the cursor passes every contact read, matching or not. And
`InterferingApp`, the application as a sync engine sees it, with a concurrent write or a lost
acknowledgement armed for the engine's next save."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.persistence import IntegrityError

from connectors.base import Connector, ConnectorError
from connectors.shopify import ShopifyCriteria
from domain.auto_import import AutoImport
from domain.import_settings import Credentials
from domain.sources import Criteria
from domain.sync import ContactPage, DeclaredField, ExternalContact

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
    # The source's own reason not to import it (e.g. an unconfirmed opt-in), or "".
    skip_reason: str = ""
    # Shopify-like customer tags, matched by ShopifyCriteria.customer_tag (apply_criteria).
    tags: set[str] = field(default_factory=set)


def matches(criteria: Criteria, contact: SourceContact) -> bool:
    """Whether a contact is one the criteria select, as Shopify's connector decides it (tags
    compared ignoring case; `subscribed_only` drops those who opted out). Criteria of other
    services select every contact."""
    if not isinstance(criteria, ShopifyCriteria):
        return True
    if criteria.subscribed_only and contact.opted_out:
        return False
    if criteria.customer_tag:
        wanted = criteria.customer_tag.strip().casefold()
        return wanted in {tag.strip().casefold() for tag in contact.tags}
    return True


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
    obtained (as an OAuth refresh does) while reading its first page.

    `declared_fields`: what each page declares beside the service's fixed fields (as a source
    whose fields depend on the account does).

    `positions=False`: contacts carry no position (`position=None`), like the real connectors:
    a sync that stops inside a page resumes at the page's start. `apply_criteria`: a page holds
    only the contacts that match the criteria (`matches`), read among `page_size` contacts; its
    cursor is after the last contact read, matching or not, so a change of criteria must start
    the read again to find contacts passed over."""

    def __init__(
        self,
        source: ScriptedSource,
        page_size: int = 100,
        before_page: Callable[[int], None] | None = None,
        lag: timedelta = timedelta(0),
        refreshed: Credentials | None = None,
        positions: bool = True,
        apply_criteria: bool = False,
        declared_fields: tuple[DeclaredField, ...] = (),
    ):
        self.source = source
        self.refreshed = refreshed
        self.page_size = page_size
        self.before_page = before_page
        self.lag = lag
        self.positions = positions
        self.apply_criteria = apply_criteria
        self.declared_fields = declared_fields  # fields each page declares, beside Shopify's
        self.pages = 0

    def close(self) -> None:
        pass  # holds nothing

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
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
            selected = [
                replace(c, fields=dict(c.fields), tags=set(c.tags))
                for c in page
                if not self.apply_criteria or matches(criteria, c)
            ]
        contacts = [
            ExternalContact(
                external_id=c.external_id,
                email=c.email,
                first_name=c.first_name,
                last_name=c.last_name,
                opted_out=c.opted_out,
                fields=c.fields,
                position=_position(c) if self.positions else None,
                deleted=c.deleted,
                skip_reason=c.skip_reason,
            )
            for c in selected
        ]
        credentials, self.refreshed = self.refreshed, None
        return ContactPage(
            contacts=contacts,
            cursor=_position(page[-1]) if page else cursor,
            has_more=len(remaining) > len(page),
            credentials=credentials,
            declared_fields=self.declared_fields,
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


class InterferingApp:
    """The application as a sync engine sees it (pass it to SyncEngine), with faults armed for
    the engine's next save, whatever it saves (a sync's start, a page, its end):

    - `before_next_save(objs)`: runs first, e.g. a concurrent write of the account
      (`change_plan_label`), the import or a contact, so the save meets a newer version and
      takes its IntegrityError retry branch (decide again on fresh state);
    - `lose_next_ack`: the save's insert of events commits, then raises IntegrityError, where
      a lost acknowledgement shows up: eventsourcing's PostgreSQL recorder retries the insert
      after an OperationalError, and the retry finds the rows its first attempt committed.

    Each fires once. Everything else is the application's."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.before_next_save: Callable[[tuple[Any, ...]], None] | None = None
        self.lose_next_ack = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        action, self.before_next_save = self.before_next_save, None
        if action is not None:
            action(objs)
        if not self.lose_next_ack:
            return self.app.save(*objs, **kwargs)
        self.lose_next_ack = False
        recorder = self.app.recorder
        insert = recorder.insert_events

        def insert_then_lose_the_ack(*args: Any, **kw: Any) -> Any:
            recorder.insert_events = insert  # once
            insert(*args, **kw)
            raise IntegrityError("scripted: the commit's acknowledgement was lost")

        recorder.insert_events = insert_then_lose_the_ack
        try:
            return self.app.save(*objs, **kwargs)
        finally:
            recorder.insert_events = insert


def change_plan_label(app: Any, account_id: str) -> None:
    """A write of the account that changes nothing a sync depends on (the plan's name, the
    limit kept) but bumps its version: an `InterferingApp.before_next_save` action."""
    account = app.get_account(account_id)
    renamed = account.plan.removesuffix(" (renamed)")
    plan = renamed if renamed != account.plan else f"{account.plan} (renamed)"
    app.upsert_account(account_id, plan, account.contact_limit, actor="admin")

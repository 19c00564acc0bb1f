"""One checker of design.md section 4's promises over a whole store, for after a fault, a load or
a soak run: whatever happened, what is stored must still hold them.

- each expected contact present once (no email twice in an account, none lost);
- no account over its contact limit;
- no unsubscribed contact active;
- no more than 500 contacts charged to an external account's budget in one window;
- the read model equal to a rebuild from the events (`replay --verify`).
"""

from __future__ import annotations

import collections
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.utils import get_topic

from autoimport.v1 import accounts_pb2, contacts_pb2
from domain.external_account import CONTACTS_PER_WINDOW, ExternalAccount
from service.config import Settings
from service.replay import verify
from service.stores import open_application
from tests.support import Client, all_contacts


@dataclass
class Expected:
    """What one account must hold: every email of `present` (more may be there), none of
    `unsubscribed` active."""

    account_id: str
    present: set[str] = field(default_factory=set)
    unsubscribed: set[str] = field(default_factory=set)


def broken_promises(settings: Settings, admin: Client, accounts: Iterable[Expected]) -> list[str]:
    """Every promise the store breaks, each said in a line; [] when all hold."""
    broken: list[str] = []
    for expected in accounts:
        broken += _contacts_of(admin, expected)
    broken += _budgets(settings)
    replayed = io.StringIO()
    if verify(settings, replayed) != 0:
        broken.append(f"replay --verify differs: {replayed.getvalue()[:2000]}")
    return broken


def _contacts_of(admin: Client, expected: Expected) -> list[str]:
    account = admin.accounts.GetAccount(
        accounts_pb2.GetAccountRequest(account_id=expected.account_id)
    )
    contacts = all_contacts(admin, expected.account_id)
    emails = collections.Counter(c.email for c in contacts)
    broken = [
        f"{expected.account_id}: {email} stored {n} times" for email, n in emails.items() if n > 1
    ]
    missing = expected.present - emails.keys()
    if missing:
        broken.append(f"{expected.account_id}: {len(missing)} contacts lost, e.g. {min(missing)}")
    if len(contacts) > account.contact_limit:
        broken.append(
            f"{expected.account_id}: {len(contacts)} contacts, over its limit of "
            f"{account.contact_limit}"
        )
    if account.contact_count != len(contacts):
        broken.append(
            f"{expected.account_id}: counts {account.contact_count} contacts, holds {len(contacts)}"
        )
    active = [
        c.email
        for c in contacts
        if c.email in expected.unsubscribed and c.status != contacts_pb2.Contact.UNSUBSCRIBED
    ]
    if active:
        broken.append(f"{expected.account_id}: unsubscribed contacts active again: {active[:5]}")
    return broken


def _budgets(settings: Settings) -> list[str]:
    """Every external account's budget, from its events: at most 500 contacts a window."""
    app = open_application(settings)
    used: dict[tuple[str, int], int] = collections.defaultdict(int)
    topics = [get_topic(ExternalAccount.BudgetUsed)]
    start = 1
    try:
        while page := app.recorder.select_notifications(start, 10_000, topics=topics):
            for notification in page:
                event: Any = app.mapper.to_domain_event(notification)
                used[(str(event.originator_id), event.window)] += event.count
            start = page[-1].id + 1
    finally:
        app.close()
    return [
        f"external account {budget} charged {count} contacts in window {window}"
        for (budget, window), count in used.items()
        if count > CONTACTS_PER_WINDOW
    ]

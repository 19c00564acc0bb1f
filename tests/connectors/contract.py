"""The connector contract: what a service provides to be tested by test_contract.py (a
`Harness`, exported as HARNESS from tests/connectors/harness_<service id>.py), and the helpers
every connector's tests share.

A harness drives one service's emulator as the service's users would (seeding, changing,
deleting contacts, revoking access) and builds the service's connector for default criteria.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Self

import pytest

import connectors
from autoimport.v1 import imports_pb2 as pb
from connectors import http
from connectors.base import CONNECTION_CHECKS, AuthError, Connector, Finding
from domain.sources import Criteria
from domain.sync import ContactPage, ExternalContact
from emulators.server import Fault, LoopbackEmulator
from tests.support import Client, create_in_new_account


def registered_services() -> list[str]:
    """Every service the product registers: the contract runs each one."""
    return list(connectors.SOURCES)


def harness_module(service: str) -> str:
    return f"tests.connectors.harness_{service}"


def harness_of(service: str) -> type[Harness]:
    """The service's harness, by naming convention; a service without one fails the contract."""
    try:
        module = importlib.import_module(harness_module(service))
    except ModuleNotFoundError as e:
        if e.name != harness_module(service):
            raise
        raise AssertionError(
            f"{service} is registered without a contract harness: write "
            f"{harness_module(service).replace('.', '/')}.py exporting HARNESS"
        ) from None
    harness: type[Harness] = module.HARNESS
    assert harness.service == service, f"{harness_module(service)} is the harness of another"
    return harness


class Harness(ABC):
    """One service's side of the contract, around its emulator (started by `with`)."""

    service: ClassVar[str]
    criteria: ClassVar[Criteria]  # the default criteria: every contact
    page_size: ClassVar[int]  # the contacts of a full page
    # What revoked access raises: ReauthRequired where the service has that notion.
    revoked_error: ClassVar[type[AuthError]] = AuthError
    # The service's OAuth refreshes an access token it rejected (then retries).
    refreshes_on_401: ClassVar[bool] = False
    # The service lists deleted contacts (as tombstones) in incremental reads.
    lists_deletions: ClassVar[bool] = False
    # Unchanged contacts an incremental read may read again (a look-back over the cursor's end,
    # a bound read twice), after a seed of `ties` contacts a timestamp: each at most once.
    overlap: ClassVar[Callable[[int], int]] = staticmethod(lambda ties: 0)
    # End to end: the sync window used (AUTOIMPORT_SYNC_INTERVAL), longer than a capped sync.
    interval: ClassVar[float] = 4.0

    emulator: LoopbackEmulator

    def __enter__(self) -> Self:
        self.emulator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emulator.stop()

    # -- the source's data ------------------------------------------------------------------

    @abstractmethod
    def seed(self, count: int, *, ties: int = 1, bad_emails: bool = False) -> list[str]:
        """`count` contacts changed long ago, `ties` of them sharing each timestamp; all with a
        valid email unless `bad_emails` (then some have none, some an invalid one). Their
        external ids."""

    @abstractmethod
    def add(self) -> str:
        """A person adds a contact at the source, now: its external id."""

    @abstractmethod
    def email_of(self, external_id: str) -> str:
        """The contact's email as the source holds it ("" when it has none)."""

    @abstractmethod
    def rename(self, external_id: str, first_name: str) -> None:
        """A person changes the contact's first name at the source, now."""

    @abstractmethod
    def delete(self, external_id: str) -> None:
        """A person deletes the contact at the source, now."""

    @abstractmethod
    def opt_out(self, external_id: str) -> bool:
        """The contact unsubscribes from email at the source; False when the source has no
        notion of consent (its contacts all come subscribed)."""

    @abstractmethod
    def opted_out(self, external_id: str) -> bool:
        """The source says the contact opted out of email."""

    @abstractmethod
    def fill_fields(self, external_id: str) -> dict[str, str]:
        """Gives the contact a value for every field the service declares: {key: value read}."""

    # -- access -----------------------------------------------------------------------------

    @abstractmethod
    def connector(self, *, valid: bool = True) -> Connector:
        """The service's connector with the emulator's credentials, or with unknown ones."""

    @abstractmethod
    def revoke(self) -> None:
        """The person revokes the import's access: the credentials held stop working."""

    @abstractmethod
    def secrets(self) -> set[str]:
        """Every credential issued: none may appear in a log or an error."""

    # -- the connection check (Connector.check_connection) ----------------------------------

    @abstractmethod
    def external_account(self) -> str:
        """The emulated account, as an import names it (normalized by the source)."""

    @abstractmethod
    def other_account(self) -> str:
        """Another account of the service (normalized), not the one the credentials reach."""

    @abstractmethod
    def limit_scopes(self) -> None:
        """The credentials held stay valid but may no longer read the contacts (the person
        connected the account without that permission)."""

    # -- failures, in the service's own words -------------------------------------------------

    @abstractmethod
    def rate_limited(self, retry_after: float | None) -> Fault:
        """The service's 429, with a Retry-After header when given."""

    @abstractmethod
    def unavailable(self, status: int) -> Fault:
        """The service's 5xx answer."""

    @abstractmethod
    def unauthorized(self) -> Fault:
        """The service's 401."""

    # -- end to end ---------------------------------------------------------------------------

    @abstractmethod
    def server_env(self) -> dict[str, str]:
        """The server's settings that point its connector at the emulator."""

    @abstractmethod
    def import_message(self) -> pb.AutoImport:
        """The emulated account as a new import names it (service, external account,
        credentials, and criteria when the service needs one), for CreateImport, CheckConnection
        and PreviewImport."""

    def create_import(self, admin: Client, contact_limit: int) -> pb.AutoImport:
        """An import of the emulated account, in a fresh account."""
        return create_in_new_account(admin, self.import_message(), contact_limit)

    def check_traffic(self) -> None:
        """After a server's syncs: the service's own rules of use held (e.g. its pacing)."""
        return None

    def settle(self) -> None:
        """Waits until changes made at the source are within a sync's bound (its lag)."""
        return None  # no wait, by default


# -- shared by every connector's tests ---------------------------------------------------------


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without long waits (a module that imports this fixture uses it)."""
    monkeypatch.setattr(http, "BASE_DELAY", 0.05)


def later() -> datetime:
    """A sync's bound well after the changes a test made (as if its lag had passed)."""
    return datetime.now(UTC) + timedelta(minutes=2)


def read_chain(
    connector: Connector,
    cursor: str = "",
    *,
    criteria: Criteria,
    until: datetime | Callable[[], datetime] = later,
) -> tuple[list[ExternalContact], str, list[ContactPage]]:
    """Reads page after page from `cursor` until the source has no more: the contacts, the
    cursor after the last page, the pages."""
    contacts: list[ExternalContact] = []
    pages = []
    while True:
        page = connector.fetch_page(criteria, cursor, until() if callable(until) else until)
        pages.append(page)
        contacts += page.contacts
        cursor = page.cursor
        if not page.has_more:
            return contacts, cursor, pages


def ids_of(contacts: list[ExternalContact]) -> list[str]:
    return [c.external_id for c in contacts]


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    """A check's findings by name, asserting there is one of each, in order."""
    assert [f.check for f in findings] == list(CONNECTION_CHECKS)
    return {f.check: f for f in findings}


def findings_of(
    connector: Connector, criteria: Criteria, external_account: str
) -> dict[str, Finding]:
    """`connector`'s check of `external_account`, by name; the connector closed after it."""
    try:
        return by_check(connector.check_connection(criteria, external_account))
    finally:
        connector.close()

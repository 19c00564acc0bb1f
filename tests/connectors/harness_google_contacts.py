"""The Google Contacts connector's harness for the contract (see contract.py)."""

from __future__ import annotations

from autoimport.v1 import imports_pb2 as pb
from connectors.base import Connector, ReauthRequired
from connectors.google_contacts import GoogleContactsConnector, GoogleContactsCriteria
from domain.auto_import import Credentials
from emulators.google_contacts import (
    EMAIL_SCOPE,
    RESOURCE_EXHAUSTED,
    GoogleContactsEmulator,
    status_body,
    unauthenticated,
)
from emulators.server import Fault
from tests.connectors.contract import Harness
from tests.support import Client, create_in_new_account


def settings_of(emulator: GoogleContactsEmulator) -> dict[str, str]:
    """A server's settings that point it (and its OAuth client) at the emulator."""
    return {
        "AUTOIMPORT_GOOGLE_CONTACTS_URL": emulator.url,
        "AUTOIMPORT_GOOGLE_OAUTH_URL": emulator.url,
        "AUTOIMPORT_GOOGLE_CLIENT_ID": emulator.client_id,
        "AUTOIMPORT_GOOGLE_CLIENT_SECRET": emulator.client_secret,
    }


def import_in(admin: Client, emulator: GoogleContactsEmulator, contact_limit: int) -> pb.AutoImport:
    """An import of the emulated owner's contacts, in a fresh account."""
    return create_in_new_account(admin, import_message_of(emulator), contact_limit)


def import_message_of(emulator: GoogleContactsEmulator) -> pb.AutoImport:
    return pb.AutoImport(
        service="google_contacts",
        external_account=emulator.owner_email,
        credentials=pb.Credentials(
            access_token=emulator.access_token, refresh_token=emulator.refresh_token
        ),
    )


class GoogleContactsHarness(Harness):
    service = "google_contacts"
    criteria = GoogleContactsCriteria()
    page_size = 1000
    revoked_error = ReauthRequired
    refreshes_on_401 = True
    lists_deletions = True

    def __init__(self, end_to_end: bool = False):
        self.emulator: GoogleContactsEmulator = GoogleContactsEmulator()
        self._emails: dict[str, str] = {}  # of deleted persons, as they were

    def seed(self, count: int, *, ties: int = 1, bad_emails: bool = False) -> list[str]:
        # A person has no timestamp Google reads by: `ties` changes nothing.
        if bad_emails:
            return self.emulator.add_people(count)
        return self.emulator.add_people(count, without_email_every=0, invalid_email_every=0)

    def add(self) -> str:
        (added,) = self.emulator.add_people(1, without_email_every=0, invalid_email_every=0)
        return added

    def email_of(self, external_id: str) -> str:
        return self._emails.get(external_id) or self.emulator.primary_email(external_id)

    def rename(self, external_id: str, first_name: str) -> None:
        self.emulator.update(external_id, given_name=first_name)

    def delete(self, external_id: str) -> None:
        self._emails[external_id] = self.emulator.primary_email(external_id)
        self.emulator.delete(external_id)

    def opt_out(self, external_id: str) -> bool:
        return False  # Google Contacts has no email consent

    def opted_out(self, external_id: str) -> bool:
        return False

    def fill_fields(self, external_id: str) -> dict[str, str]:
        self.emulator.update(
            external_id, company="Acme", job_title="Buyer", birthday={"month": 2, "day": 29}
        )
        return {"company": "Acme", "job_title": "Buyer", "birthday": "--02-29"}

    def connector(self, *, valid: bool = True) -> Connector:
        emulator = self.emulator
        credentials = (
            Credentials(emulator.access_token, emulator.refresh_token)
            if valid
            else Credentials("ya29.unknown-access-token-42", "1//0e-unknown-refresh-token-42")
        )
        return GoogleContactsConnector(
            credentials,
            base_url=emulator.url,
            oauth_url=emulator.url,
            client_id=emulator.client_id,
            client_secret=emulator.client_secret,
        )

    def revoke(self) -> None:
        self.emulator.expire_access_tokens()
        self.emulator.revoke_refresh_token()

    def secrets(self) -> set[str]:
        unknown = {"ya29.unknown-access-token-42", "1//0e-unknown-refresh-token-42"}
        return self.emulator.issued_secrets() | unknown

    def external_account(self) -> str:
        return self.emulator.owner_email

    def other_account(self) -> str:
        return "someone.else@gmail.com"

    def limit_scopes(self) -> None:
        self.emulator.limit_scopes(frozenset({EMAIL_SCOPE}))  # whose account, not its contacts

    def rate_limited(self, retry_after: float | None) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return Fault(429, headers, RESOURCE_EXHAUSTED)

    def unavailable(self, status: int) -> Fault:
        return Fault(status, {}, status_body(status, "UNAVAILABLE", "The service is unavailable."))

    def unauthorized(self) -> Fault:
        return Fault(401, {}, unauthenticated("ACCESS_TOKEN_EXPIRED"))

    def server_env(self) -> dict[str, str]:
        return settings_of(self.emulator)

    def import_message(self) -> pb.AutoImport:
        return import_message_of(self.emulator)


HARNESS = GoogleContactsHarness

"""The Mailchimp connector's harness for the contract (see contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autoimport.v1 import imports_pb2 as pb
from connectors.base import Connector, ReauthRequired
from connectors.mailchimp import MailchimpConnector, MailchimpCriteria
from emulators.mailchimp import MailchimpEmulator, problem
from emulators.server import Fault
from tests.connectors.contract import Harness

UNKNOWN_KEY = "00000000000000000000000000000000-us19"


class MailchimpHarness(Harness):
    service = "mailchimp"
    criteria = MailchimpCriteria(audience_id=MailchimpEmulator.list_id)
    page_size = 1000
    revoked_error = ReauthRequired  # keys and tokens never expire: a refused one was revoked
    lists_deletions = True  # archived members are read, as deletions at the source

    def __init__(self, end_to_end: bool = False):
        # For a server's syncs, changes are stamped past the connector's lag (a minute).
        ago = timedelta(minutes=2) if end_to_end else timedelta(0)
        # The contract's fields are the ones declared statically (the tags): an audience
        # without custom merge fields (test_connector_mailchimp.py reads those).
        self.emulator: MailchimpEmulator = MailchimpEmulator(
            changed_ago=ago,
            merge_fields=[
                ("FNAME", "First Name", "text"),
                ("LNAME", "Last Name", "text"),
                ("PHONE", "Phone Number", "phone"),
            ],
        )

    def seed(self, count: int, *, ties: int = 1, bad_emails: bool = False) -> list[str]:
        groups = -(-count // max(ties, 1))
        start = datetime.now(UTC) - timedelta(days=1, seconds=groups)
        ids = self.emulator.add_members(
            count, changed_at=start, ties=ties, status="subscribed", tags=[]
        )
        if bad_emails:
            for n, member_id in enumerate(ids[::7]):
                email = "" if n % 2 else f"not-an-address-{n}.example.com"
                self.emulator.members[member_id]["email_address"] = email
        return ids

    def add(self) -> str:
        now = datetime.now(UTC) - self.emulator.changed_ago
        (added,) = self.emulator.add_members(1, changed_at=now, status="subscribed", tags=[])
        return added

    def email_of(self, external_id: str) -> str:
        return str(self.emulator.members[external_id]["email_address"])

    def rename(self, external_id: str, first_name: str) -> None:
        self.emulator.change(external_id, FNAME=first_name)

    def delete(self, external_id: str) -> None:
        self.emulator.archive(external_id)

    def opt_out(self, external_id: str) -> bool:
        self.emulator.set_status(external_id, "unsubscribed")
        return True

    def opted_out(self, external_id: str) -> bool:
        return self.emulator.members[external_id]["status"] in ("unsubscribed", "cleaned")

    def fill_fields(self, external_id: str) -> dict[str, str]:
        with self.emulator.lock:
            self.emulator.members[external_id]["tags"] = [
                {"id": 7, "name": "VIP"},
                {"id": 8, "name": "Customer"},
            ]
        self.emulator.change(external_id)
        return {"tags": "VIP, Customer"}

    def connector(self, *, valid: bool = True) -> Connector:
        return MailchimpConnector(
            self.emulator.api_key if valid else UNKNOWN_KEY,
            base_url=self.emulator.url,
            external_account=self.emulator.account_id,
        )

    def revoke(self) -> None:
        self.emulator.api_key = "11111111111111111111111111111111-us19"  # the key was deleted

    def secrets(self) -> set[str]:
        return {self.emulator.api_key, self.emulator.oauth_token, UNKNOWN_KEY}

    def rate_limited(self, retry_after: float | None) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        detail = "You have exceeded the limit of 10 simultaneous connections."
        return Fault(429, headers, problem(429, "Too Many Requests", detail))

    def unavailable(self, status: int) -> Fault:
        return Fault(status, {}, problem(status, "Service Unavailable", "Please try again."))

    def unauthorized(self) -> Fault:
        detail = "Your API key may be invalid, or you've attempted to access the wrong datacenter."
        return Fault(401, {}, problem(401, "API Key Invalid", detail))

    def server_env(self) -> dict[str, str]:
        return {"AUTOIMPORT_MAILCHIMP_URL": self.emulator.url}

    def import_message(self) -> pb.AutoImport:
        # An import names its audience (the default criteria has none).
        return pb.AutoImport(
            service=self.service,
            external_account=self.emulator.account_id,
            credentials=pb.Credentials(access_token=self.emulator.api_key),
            mailchimp=pb.MailchimpCriteria(audience_id=self.emulator.list_id),
        )

    def external_account(self) -> str:
        return self.emulator.account_id

    def other_account(self) -> str:
        return "0123456789abcdef0123456789"

    def limit_scopes(self) -> None:
        # Mailchimp has no scopes: a user whose role may not view the audience.
        self.emulator.forbidden_lists.add(self.emulator.list_id)


HARNESS = MailchimpHarness

"""The HubSpot connector's harness for the contract (see contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from autoimport.v1 import imports_pb2 as pb
from connectors import hubspot
from connectors.base import Connector
from connectors.hubspot import HubSpotConnector, HubSpotCriteria
from emulators.hubspot import SEARCH_PATH, HubSpotEmulator, error_body, rate_limit_body
from emulators.server import Fault
from tests.connectors.contract import Harness

# Seeded contacts' timestamps are further apart than the connector's look-back, so that an
# incremental read reads again only the last timestamp's contacts.
STEP = hubspot.LOOKBACK + timedelta(minutes=1)


class HubSpotHarness(Harness):
    service = "hubspot"
    criteria = HubSpotCriteria()
    page_size = 200
    overlap = staticmethod(lambda ties: ties)  # the look-back reads the last timestamp again
    # Searches are paced at 4 in 1.25 s: a capped sync took ~3 s alone, and was seen to take
    # over 6 s on a busy 2-CPU machine (a sync must end in the window it began in).
    interval = 10.0

    def __init__(self, end_to_end: bool = False):
        # Changes are stamped now in the connector's tests (after a sync's bound, as during a
        # read); for a server's syncs, before the bound (past the connector's lag) already.
        modified_ago = HubSpotEmulator.modified_ago if end_to_end else timedelta(0)
        self.emulator: HubSpotEmulator = HubSpotEmulator(modified_ago=modified_ago)

    def seed(self, count: int, *, ties: int = 1, bad_emails: bool = False) -> list[str]:
        groups = -(-count // max(ties, 1))
        start = datetime.now(UTC) - timedelta(days=1) - STEP * groups
        ids = self.emulator.add_contacts(count, modified_at=start, ties=ties, step=STEP)
        if not bad_emails:
            for n, contact_id in enumerate(ids):
                properties = self.emulator.contacts[contact_id]["properties"]
                if "@" not in (properties["email"] or ""):
                    properties["email"] = f"seeded{n:06d}-{contact_id}@example.com"
        return ids

    def add(self) -> str:
        (added,) = self.emulator.add_contacts(1)
        return added

    def email_of(self, external_id: str) -> str:
        return self.emulator.contacts[external_id]["properties"]["email"] or ""

    def rename(self, external_id: str, first_name: str) -> None:
        self.emulator.update(external_id, firstname=first_name)

    def delete(self, external_id: str) -> None:
        self.emulator.archive(external_id)

    def opt_out(self, external_id: str) -> bool:
        self.emulator.update(external_id, hs_email_optout="true")
        return True

    def opted_out(self, external_id: str) -> bool:
        return bool(self.emulator.contacts[external_id]["properties"]["hs_email_optout"] == "true")

    def fill_fields(self, external_id: str) -> dict[str, str]:
        self.emulator.update(
            external_id, company="Acme", jobtitle="Buyer", lifecyclestage="customer"
        )
        return {"company": "Acme", "job_title": "Buyer", "lifecycle_stage": "customer"}

    def connector(self, *, valid: bool = True) -> Connector:
        token = self.emulator.access_token if valid else "pat-na1-unknown-token-never-logged-42"
        return HubSpotConnector(token, base_url=self.emulator.url, portal=self.emulator.portal_id)

    def revoke(self) -> None:
        self.emulator.access_token = "pat-na1-a-new-private-app-token-0000"  # rotated away

    def secrets(self) -> set[str]:
        return {self.emulator.access_token, "pat-na1-unknown-token-never-logged-42"}

    def external_account(self) -> str:
        return self.emulator.portal_id

    def other_account(self) -> str:
        return "87654321"

    def limit_scopes(self) -> None:
        self.emulator.scopes = {"crm.objects.companies.read"}

    def rate_limited(self, retry_after: float | None) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return Fault(429, headers, rate_limit_body("SECONDLY"))

    def unavailable(self, status: int) -> Fault:
        return Fault(status, {}, error_body("internal error", "INTERNAL_ERROR"))

    def unauthorized(self) -> Fault:
        message = "Authentication credentials are invalid, expired or revoked."
        return Fault(401, {}, error_body(message, "INVALID_AUTHENTICATION"))

    def server_env(self) -> dict[str, str]:
        return {"AUTOIMPORT_HUBSPOT_URL": self.emulator.url}

    def import_message(self) -> pb.AutoImport:
        return pb.AutoImport(
            service=self.service,
            external_account=self.emulator.portal_id,
            credentials=pb.Credentials(access_token=self.emulator.access_token),
        )

    def check_traffic(self) -> None:
        assert self.emulator.max_searches_in_any_second() <= 5
        searches = self.emulator.recorded(SEARCH_PATH)
        assert all(r.body["after"] == "0" for r in searches)  # keyset, never offsets


HARNESS = HubSpotHarness

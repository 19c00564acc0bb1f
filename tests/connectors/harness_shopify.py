"""The Shopify connector's harness for the contract (see contract.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from autoimport.v1 import imports_pb2 as pb
from connectors.base import Connector
from connectors.shopify import ShopifyConnector, ShopifyCriteria
from emulators.server import Fault
from emulators.shopify import THROTTLED, UNAUTHORIZED, ShopifyEmulator
from tests.connectors.contract import Harness


class ShopifyHarness(Harness):
    service = "shopify"
    criteria = ShopifyCriteria()
    page_size = 250

    def __init__(self, end_to_end: bool = False):
        self.emulator: ShopifyEmulator = ShopifyEmulator()

    def seed(self, count: int, *, ties: int = 1, bad_emails: bool = False) -> list[str]:
        every = (41, 59) if bad_emails else (0, 0)
        ids = self.emulator.add_customers(
            count, ties=ties, without_email_every=every[0], invalid_email_every=every[1]
        )
        return [str(i) for i in ids]

    def add(self) -> str:
        (added,) = self.emulator.add_customers(1, updated_at=datetime.now(UTC))
        return str(added)

    def email_of(self, external_id: str) -> str:
        return self.emulator.customers[int(external_id)]["email"] or ""

    def rename(self, external_id: str, first_name: str) -> None:
        self.emulator.update(int(external_id), first_name=first_name)

    def delete(self, external_id: str) -> None:
        self.emulator.delete(int(external_id))

    def opt_out(self, external_id: str) -> bool:
        customer = self.emulator.customers[int(external_id)]
        consent = {**customer["email_marketing_consent"], "state": "unsubscribed"}
        self.emulator.update(int(external_id), email_marketing_consent=consent)
        return True

    def opted_out(self, external_id: str) -> bool:
        customer = self.emulator.customers[int(external_id)]
        return bool(customer["email_marketing_consent"]["state"] == "unsubscribed")

    def fill_fields(self, external_id: str) -> dict[str, str]:
        customer = self.emulator.customers[int(external_id)]
        address = {**customer["default_address"], "company": "Acme", "country": "Japan"}
        self.emulator.update(
            int(external_id),
            total_spent="123.45",
            orders_count=9,
            tags="vip, wholesale",
            default_address=address,
        )
        return {
            "total_spent": "123.45",
            "orders_count": "9",
            "tags": "vip, wholesale",
            "company": "Acme",
            "country": "Japan",
        }

    def connector(self, *, valid: bool = True) -> Connector:
        token = self.emulator.access_token if valid else "shpat_unknown_token_never_logged_42"
        return ShopifyConnector(self.emulator.shop, token, base_url=self.emulator.url)

    def revoke(self) -> None:
        self.emulator.access_token = "shpat_reinstalled_app_0000000000"  # the app uninstalled

    def secrets(self) -> set[str]:
        return {self.emulator.access_token, "shpat_unknown_token_never_logged_42"}

    def external_account(self) -> str:
        return self.emulator.shop

    def other_account(self) -> str:
        return "another-shop"

    def limit_scopes(self) -> None:
        self.emulator.scopes = ["read_orders", "read_products"]

    def rate_limited(self, retry_after: float | None) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:.1f}"}
        return Fault(429, headers, THROTTLED)

    def unavailable(self, status: int) -> Fault:
        return Fault(status, {}, {"errors": "Service Unavailable"})

    def unauthorized(self) -> Fault:
        return Fault(401, {}, UNAUTHORIZED)

    def server_env(self) -> dict[str, str]:
        return {"AUTOIMPORT_SHOPIFY_URL": self.emulator.url}

    def import_message(self) -> pb.AutoImport:
        return pb.AutoImport(
            service=self.service,
            external_account=self.emulator.shop,
            credentials=pb.Credentials(access_token=self.emulator.access_token),
        )

    def check_traffic(self) -> None:
        paged = [r for r in self.emulator.recorded() if "page_info" in r.query]
        assert all(set(r.query) <= {"page_info", "limit", "fields"} for r in paged)

    def settle(self) -> None:
        time.sleep(ShopifyConnector.lag.total_seconds() + 1.1)


HARNESS = ShopifyHarness

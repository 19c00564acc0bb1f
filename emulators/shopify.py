"""An emulator of Shopify's Admin REST customers list, served over real HTTP on loopback.

It reproduces the wire format of ../shared/reference/external-apis.md section 2:
`GET /admin/api/<version>/customers.json` with `limit` (max 250), `updated_at_min`,
`updated_at_max` (inclusive, compared as instants), `since_id` (only ids above it), `fields`;
customers in id order; `page_info` from the Link header (rel="next"); a 400 when a filter is
re-sent with page_info; the X-Shopify-Access-Token check
(401); a leaky bucket (40 calls leaking 2 a second) reported in X-Shopify-Shop-Api-Call-Limit,
with 429 and a float Retry-After when full. Timestamps carry the shop's +02:00 offset, and many
customers share one updated_at.

The connection check's reads: `GET /admin/api/<version>/shop.json` ({"shop": {...,
"myshopify_domain": "<shop>.myshopify.com"}}) and `GET /admin/oauth/access_scopes.json`
({"access_scopes": [{"handle": ...}]}, the scopes granted to the token: `scopes`).

Requests, faults and early retries are recorded as emulators/server.py does for every emulator;
it also counts requests per second.

`python -m emulators.shopify --port 8081 --contacts 5000` serves it alone.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from emulators.server import Answer, LoopbackEmulator, Request, main

SHOP_OFFSET = timezone(timedelta(hours=2))
SCOPES_PATH = "/admin/oauth/access_scopes.json"
CONSENT_STATES = ("subscribed", "not_subscribed", "unsubscribed", "pending")
TAGS = ("vip, newsletter", "", "Wholesale", "newsletter", " VIP ,repeat")
FILTERS = (
    "updated_at_min",
    "updated_at_max",
    "created_at_min",
    "created_at_max",
    "ids",
    "since_id",
)
UNAUTHORIZED = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}
THROTTLED = {
    "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume "
    "uninterrupted service."
}


def shop_time(instant: datetime) -> str:
    """An instant as Shopify writes it: whole seconds, the shop's offset."""
    return instant.astimezone(SHOP_OFFSET).replace(microsecond=0).isoformat()


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class ShopifyEmulator(LoopbackEmulator):
    shop: str = "emulated-shop"
    access_token: str = "shpat_emulator_secret_0123456789"
    # The access scopes granted to the token (the app's installation).
    scopes: list[str] = field(default_factory=lambda: ["read_customers", "read_orders"])
    bucket_size: int = 40
    leak_per_second: float = 2.0
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    _level: float = 0.0
    _leaked_at: float = field(default_factory=time.monotonic)
    _next_id: int = 7817370200000
    _page_epoch: int = 0  # page_info issued in an older epoch has expired

    # -- data ------------------------------------------------------------------------------

    def add_customers(
        self,
        count: int,
        *,
        updated_at: datetime | None = None,
        ties: int = 50,
        without_email_every: int = 0,
        invalid_email_every: int = 0,
    ) -> list[int]:
        """`count` customers, `ties` of them sharing each updated_at (one second apart); the
        last of every `without_email_every` has no email, of every `invalid_email_every` an
        invalid one (0: none)."""
        start = updated_at or datetime.now(UTC) - timedelta(days=1)
        ids = []
        with self.lock:
            for n in range(count):
                self._next_id += 1
                number = len(self.customers)
                customer_id = self._next_id
                email: str | None = f"customer{number:06d}@example.com"
                if without_email_every and number % without_email_every == without_email_every - 1:
                    email = None
                elif (
                    invalid_email_every and number % invalid_email_every == invalid_email_every - 1
                ):
                    email = f"customer{number:06d} at example.com"
                self.customers[customer_id] = {
                    "id": customer_id,
                    "email": email,
                    "first_name": f"First{number}",
                    "last_name": f"Last{number}",
                    "phone": f"+1415555{number % 10000:04d}" if number % 3 == 0 else None,
                    "tags": TAGS[number % len(TAGS)],
                    "orders_count": number % 7,
                    "total_spent": f"{(number % 100) * 10.5:.2f}",
                    "currency": "EUR",
                    "state": "enabled",
                    "verified_email": True,
                    "note": None,
                    "created_at": shop_time(start),
                    "updated_at": shop_time(start + timedelta(seconds=n // max(ties, 1))),
                    "email_marketing_consent": {
                        "state": CONSENT_STATES[number % len(CONSENT_STATES)],
                        "opt_in_level": "single_opt_in",
                        "consent_updated_at": shop_time(start),
                    },
                    "sms_marketing_consent": None,
                    "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
                    "default_address": {
                        "id": customer_id + 1,
                        "customer_id": customer_id,
                        "company": f"Company {number % 11}" if number % 2 == 0 else None,
                        "city": "Berlin",
                        "country": ("Germany", "France", "Canada")[number % 3],
                        "country_code": ("DE", "FR", "CA")[number % 3],
                        "default": True,
                    },
                }
                ids.append(customer_id)
        return ids

    def update(self, customer_id: int, **values: Any) -> None:
        """Changes a customer as the shop would: its updated_at becomes now."""
        with self.lock:
            customer = self.customers[customer_id]
            customer.update(values)
            customer["updated_at"] = shop_time(datetime.now(UTC))

    def delete(self, customer_id: int) -> dict[str, Any]:
        """Deletes a customer: it is no longer listed (REST shows no trace of it)."""
        with self.lock:
            return self.customers.pop(customer_id)

    def expire_page_infos(self) -> None:
        """Every page_info issued so far is refused from now on (400 "Invalid value.")."""
        with self.lock:
            self._page_epoch += 1

    def fill_bucket(self) -> None:
        """The bucket is full: the next call is throttled."""
        with self.lock:
            self._leak()
            self._level = float(self.bucket_size)

    def requests_per_second(self) -> Counter[int]:
        with self.lock:
            return Counter(int(r.at) for r in self.requests)

    # -- one request -----------------------------------------------------------------------

    def _leak(self) -> None:
        now = time.monotonic()
        self._level = max(0.0, self._level - (now - self._leaked_at) * self.leak_per_second)
        self._leaked_at = now

    def respond(self, request: Request) -> Answer:
        if request.method != "GET":
            return 404, {}, {"errors": "Not Found"}
        if request.headers.get("X-Shopify-Access-Token") != self.access_token:
            return 401, {}, UNAUTHORIZED
        self._leak()
        if self._level + 1 > self.bucket_size:
            wait = (self._level + 1 - self.bucket_size) / self.leak_per_second
            wait = max(1.0, round(wait + 0.05, 1))
            return 429, self._limit_header({"Retry-After": f"{wait:.1f}"}), THROTTLED
        self._level += 1
        fault = self.take_fault(request)
        if fault is not None:
            status, headers, body = fault.answer()
            return status, self._limit_header(headers), body
        if request.path == SCOPES_PATH:
            handles = [{"handle": handle} for handle in self.scopes]
            return 200, self._limit_header({}), {"access_scopes": handles}
        parts = request.path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["admin", "api"] and parts[3] == "shop.json":
            return 200, self._limit_header({}), {"shop": self._shop()}
        if len(parts) != 4 or parts[:2] != ["admin", "api"] or parts[3] != "customers.json":
            return 404, self._limit_header({}), {"errors": "Not Found"}
        return self._customers(request.query, parts[2], request.headers.get("Host") or "127.0.0.1")

    def _shop(self) -> dict[str, Any]:
        return {
            "id": 548380009,
            "name": self.shop.replace("-", " ").title(),
            "email": f"owner@{self.shop}.example.com",
            "domain": f"{self.shop}.example.com",
            "myshopify_domain": f"{self.shop}.myshopify.com",
            "country_code": "DE",
            "currency": "EUR",
            "iana_timezone": "Europe/Berlin",
            "plan_name": "basic",
            "created_at": shop_time(datetime(2020, 1, 15, 10, tzinfo=UTC)),
        }

    def _limit_header(self, headers: dict[str, str]) -> dict[str, str]:
        used = min(self.bucket_size, int(self._level + 0.999))
        return {**headers, "X-Shopify-Shop-Api-Call-Limit": f"{used}/{self.bucket_size}"}

    def _customers(self, query: dict[str, str], version: str, host: str) -> Answer:
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            return 400, self._limit_header({}), {"errors": {"limit": ["is not a number"]}}
        if not 1 <= limit <= 250:
            return 400, self._limit_header({}), {"errors": {"limit": ["must be 1 to 250"]}}
        page_info = query.get("page_info")
        if page_info is not None:
            extra = sorted(set(query) - {"page_info", "limit", "fields"})
            if extra:
                message = f"{extra[0]} cannot be passed when page_info is present"
                return 400, self._limit_header({}), {"errors": {"page_info": [message]}}
            try:
                state = json.loads(base64.urlsafe_b64decode(page_info.encode()))
            except ValueError:
                return 400, self._limit_header({}), {"errors": {"page_info": ["Invalid value."]}}
            if state.get("epoch", 0) != self._page_epoch:  # expired
                return 400, self._limit_header({}), {"errors": {"page_info": ["Invalid value."]}}
            low, high = state["min"], state["max"]
            after, before = state.get("last_id", 0), state.get("before_id")
        else:
            try:
                since_id = int(query.get("since_id") or 0)
            except ValueError:
                return 400, self._limit_header({}), {"errors": {"since_id": ["is invalid"]}}
            low, high, after, before = (
                query.get("updated_at_min"),
                query.get("updated_at_max"),
                since_id,
                None,
            )
        try:
            low_at = parse_time(low) if low else None
            high_at = parse_time(high) if high else None
        except ValueError:
            return 400, self._limit_header({}), {"errors": {"updated_at": ["is invalid"]}}
        selected = [
            c
            for customer_id, c in sorted(self.customers.items())
            if customer_id > after
            and (before is None or customer_id < before)
            and (low_at is None or parse_time(c["updated_at"]) >= low_at)
            and (high_at is None or parse_time(c["updated_at"]) <= high_at)
        ]
        if before is not None:  # a previous page: the last `limit` before it
            selected = selected[-limit:]
        page = selected[:limit]
        wanted = [f for f in query.get("fields", "").split(",") if f]
        customers = []
        for customer in page:
            shown = {k: v for k, v in customer.items() if not wanted or k in wanted}
            if version < "2024-01":
                shown["accepts_marketing"] = (
                    customer["email_marketing_consent"]["state"] == "subscribed"
                )
            customers.append(shown)
        headers: dict[str, str] = {}
        links = []
        if page and page[0]["id"] != self._first_id(low_at, high_at):  # page 2 on: a way back
            back = {"min": low, "max": high, "before_id": page[0]["id"], "epoch": self._page_epoch}
            links.append(self._link(host, version, limit, back, "previous"))
        if page and (before is not None or len(selected) > limit):
            forward = {
                "min": low,
                "max": high,
                "last_id": page[-1]["id"],
                "epoch": self._page_epoch,
            }
            links.append(self._link(host, version, limit, forward, "next"))
        if links:
            headers["Link"] = ", ".join(links)
        return 200, self._limit_header(headers), {"customers": customers}

    def _first_id(self, low: datetime | None, high: datetime | None) -> int | None:
        for customer_id, c in sorted(self.customers.items()):
            at = parse_time(c["updated_at"])
            if (low is None or at >= low) and (high is None or at <= high):
                return customer_id
        return None

    @staticmethod
    def _link(host: str, version: str, limit: int, state: dict[str, Any], rel: str) -> str:
        token = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
        query = urlencode({"limit": limit, "page_info": token})
        return f'<http://{host}/admin/api/{version}/customers.json?{query}>; rel="{rel}"'


def _build(args: argparse.Namespace) -> ShopifyEmulator:
    emulator = ShopifyEmulator(shop=args.shop, access_token=args.token)
    emulator.add_customers(args.contacts)
    return emulator


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shop", default="emulated-shop")
    parser.add_argument("--token", default="shpat_emulator_secret_0123456789")


if __name__ == "__main__":
    main(
        __doc__,
        8081,
        _build,
        lambda e: [f"Shopify emulator for shop {e.shop!r} listening on {e.url}"],
        _arguments,
    )

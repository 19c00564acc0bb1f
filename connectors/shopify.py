"""Shopify (Admin REST customers, API version 2025-01).

Reading: `GET /admin/api/2025-01/customers.json` in chains. A chain's first request filters a
time window [updated_at_min, updated_at_max] (both inclusive, compared by Shopify as instants);
the next pages follow the Link header's opaque page_info with only `limit` and `fields`, as
Shopify requires. The cursor is JSON with sorted keys: {"min": ..., "max": ..., "page_info": ...}
holds the window of the running chain and the page_info of the page to read next (none: the
chain's first page); {"min": ...} alone starts the next chain there. A chain's window is fixed
when it starts, so a customer updated meanwhile leaves it and is read by the next chain, which
starts at the previous chain's max: nothing falls between two windows, and a customer updated
exactly at a bound is read twice (harmless: unchanged).

Customers come in id order (the order `since_id`, Shopify's other relative paging, follows), so
each contact carries a position {"min": ..., "max": ..., "since_id": its id}: resuming there is
a first request for the same window with `since_id` (Shopify allows it with the other filters,
not with page_info), which returns exactly the window's customers after it, whatever their
updated_at. A sync stopped by a cap resumes right after the last contact it processed, and a
position, holding no page_info, never expires. A page whose ids do not ascend gives its contacts
no position (after a cap it is read again whole) rather than risk passing over a customer.

A page_info Shopify no longer accepts (a chain left behind a cap for long) restarts its chain
from the window's start rather than failing every later sync.

Criteria (subscribed only, a customer tag) are applied here: Shopify's list has no such filter.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors import http
from connectors.base import (
    AuthError,
    FieldSpec,
    Finding,
    ImportTarget,
    PermanentError,
    RetryableError,
    Setting,
    Source,
    credentials_rejected,
    text_of,
)
from domain.errors import Violations
from domain.sources import Criteria
from domain.sync import ContactPage, ExternalContact

log = logging.getLogger(__name__)

API_VERSION = "2025-01"
PATH = f"/admin/api/{API_VERSION}/customers.json"
SHOP_PATH = f"/admin/api/{API_VERSION}/shop.json"
SCOPES_PATH = "/admin/oauth/access_scopes.json"  # not versioned
# What reading customers needs (a write scope includes its read scope).
CUSTOMER_SCOPES = frozenset({"read_customers", "write_customers"})
CALL_LIMIT = "X-Shopify-Shop-Api-Call-Limit"
PAGE_SIZE = 250  # Shopify's maximum
FIELDS = (
    "id,email,first_name,last_name,phone,tags,orders_count,total_spent,updated_at,"
    "email_marketing_consent,default_address"
)
# The leaky bucket: Shopify's standard bucket leaks 2 calls a second. Above this share of the
# bucket, the connector waits for it to drain before its next call.
LEAK_PER_SECOND = 2.0
BUCKET_HIGH_WATER = 0.8

_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


MAX_TAG_LENGTH = 255
_SHOP_HANDLE = re.compile(r"[a-z0-9][a-z0-9-]{0,59}")


@dataclass(frozen=True)
class ShopifyCriteria(Criteria):
    service = "shopify"
    subscribed_only: bool = field(
        default=False, metadata={"help": "only customers subscribed to email marketing"}
    )
    customer_tag: str = field(default="", metadata={"help": "only customers with this tag"})

    def validate(self, violations: Violations, field: str) -> None:
        tag = self.customer_tag
        if tag != tag.strip() or "," in tag or len(tag) > MAX_TAG_LENGTH:
            violations.add(
                f"{field}.customer_tag",
                f"must be one Shopify tag: no commas, no surrounding spaces, "
                f"at most {MAX_TAG_LENGTH} characters",
            )


def shop_handle(value: str) -> str:
    """The shop's handle, lower-cased, from "my-store" or "my-store.myshopify.com"."""
    return value.lower().removeprefix("https://").rstrip("/").removesuffix(".myshopify.com")


def normalize_account(value: str) -> str:
    handle = shop_handle(value)
    if not _SHOP_HANDLE.fullmatch(handle):
        raise ValueError("must be the shop's handle, e.g. 'my-store' or 'my-store.myshopify.com'")
    return handle


def base_url_of(shop: str, configured: str = "") -> str:
    """The configured base URL when there is one (an emulator, a proxy), else the shop's own."""
    return configured.strip().rstrip("/") or f"https://{shop}.myshopify.com"


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def next_page_info(link_header: str) -> str | None:
    """The page_info of the Link header's rel="next" URL, or None on the last page."""
    for part in link_header.split(","):
        match = _NEXT_LINK.search(part)
        if match:
            values = httpx.URL(match.group(1)).params.get_list("page_info")
            return values[0] if values else None
    return None


def to_contact(customer: dict[str, Any], position: str | None = None) -> ExternalContact:
    consent = customer.get("email_marketing_consent") or {}
    address = customer.get("default_address") or {}
    fields = {
        "total_spent": text_of(customer.get("total_spent")),
        "orders_count": text_of(customer.get("orders_count")),
        "tags": text_of(customer.get("tags")),
        "company": text_of(address.get("company")),
        "country": text_of(address.get("country") or address.get("country_name")),
    }
    return ExternalContact(
        external_id=str(customer["id"]),
        email=text_of(customer.get("email")),
        first_name=text_of(customer.get("first_name")),
        last_name=text_of(customer.get("last_name")),
        phone=text_of(customer.get("phone")),
        opted_out=consent.get("state") == "unsubscribed",
        fields={key: value for key, value in fields.items() if value},
        position=position,
    )


def matches(criteria: Criteria, customer: dict[str, Any]) -> bool:
    if not isinstance(criteria, ShopifyCriteria):
        return True
    if criteria.subscribed_only:
        consent = customer.get("email_marketing_consent") or {}
        if consent.get("state") != "subscribed":
            return False
    if criteria.customer_tag:
        wanted = criteria.customer_tag.strip().casefold()
        tags = {tag.strip().casefold() for tag in text_of(customer.get("tags")).split(",")}
        if wanted not in tags:
            return False
    return True


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ascending(ids: list[Any], since_id: int | None) -> bool:
    """Whether a page's ids ascend (after `since_id`): positions by id are safe only then."""
    if not all(_is_id(i) for i in ids):
        return False
    bounded = [since_id, *ids] if since_id is not None and ids else ids
    return all(a < b for a, b in itertools.pairwise(bounded))


class ShopifyConnector:
    """Reads one shop's customers with an Admin API access token."""

    # Shopify's list reads the shop's database: only clock skew and commit delays to allow for.
    lag = timedelta(seconds=5)

    def __init__(
        self,
        shop: str,
        access_token: str,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ):
        self.shop = shop
        self._client = client or http.new_client(
            base_url or base_url_of(shop), {"X-Shopify-Access-Token": access_token}, timeout
        )
        self._pause_until = 0.0  # monotonic time before which the bucket is too full

    def close(self) -> None:
        self._client.close()

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
        with http.deadline(deadline):  # each request ends by it, or fails
            state = self._decode(cursor)
            response: httpx.Response | None = None
            if state.get("page_info"):
                window_max = state["max"]
                response = self._get(
                    {"limit": PAGE_SIZE, "fields": FIELDS, "page_info": state["page_info"]}
                )
                if response.status_code == 400:
                    # Shopify no longer knows the saved page_info (a chain left for long behind a
                    # cap): read the chain's window again from its start; the customers already
                    # read come unchanged, so they cost nothing.
                    log.info("Shopify refused a saved page_info: reading its window again")
                    state, response = {"min": state.get("min", "")}, None
            since_id = state.get("since_id") if response is None and state.get("max") else None
            if response is None:
                params: dict[str, Any] = {"limit": PAGE_SIZE, "fields": FIELDS}
                if since_id is not None:  # the rest of a chain's window, after a customer
                    window_max = state["max"]
                    params["since_id"] = since_id
                else:  # a new chain: its window ends at this sync's bound, whole seconds
                    window_max = until.astimezone(UTC).replace(microsecond=0).isoformat()
                    if state.get("min") and _instant(state["min"]) > _instant(window_max):
                        # The bound went backwards (a lag change): nothing new to read yet.
                        return ContactPage(contacts=[], cursor=cursor, has_more=False)
                if state.get("min"):
                    params["updated_at_min"] = state["min"]
                params["updated_at_max"] = window_max
                response = self._get(params)
                if response.status_code == 400:
                    message = http.error_message(response)
                    raise PermanentError(f"Shopify refused the request (HTTP 400): {message}")
            try:
                customers = response.json()["customers"]
            except (ValueError, KeyError, TypeError):
                raise RetryableError("Shopify sent an unreadable list of customers") from None
            page_info = next_page_info(response.headers.get("Link", ""))
            if page_info:
                next_state = {
                    "min": state.get("min", ""),
                    "max": window_max,
                    "page_info": page_info,
                }
            else:  # the chain is done: the next one starts where this window ended
                next_state = {"min": window_max}
            window = {"min": state.get("min", ""), "max": window_max}
            positioned = _ascending([c.get("id") for c in customers], since_id)
            if not positioned:
                log.warning("Shopify listed customers out of id order: they carry no position")
            contacts = [
                to_contact(
                    c,
                    json.dumps({**window, "since_id": c["id"]}, sort_keys=True)
                    if positioned
                    else None,
                )
                for c in customers
                if matches(criteria, c)
            ]
            return ContactPage(
                contacts=contacts,
                cursor=json.dumps(next_state, sort_keys=True),
                has_more=bool(page_info),
            )

    def check_connection(
        self, criteria: Criteria, external_account: str, *, deadline: float | None = None
    ) -> list[Finding]:
        """The shop the token reaches (shop.json), the scopes granted to it
        (access_scopes.json) and the call bucket's level after them."""
        try:
            with http.deadline(deadline):  # each request ends by it, or fails
                shop = http.send(self._client, "GET", SHOP_PATH, service="Shopify")
                scopes = http.send(self._client, "GET", SCOPES_PATH, service="Shopify")
        except AuthError as e:
            return credentials_rejected(str(e))
        return [
            Finding("credentials", True, "Shopify accepted the access token"),
            _shop_finding(shop, external_account),
            _scopes_finding(scopes),
            _bucket_finding(scopes.headers.get(CALL_LIMIT, "")),
        ]

    def _decode(self, cursor: str) -> dict[str, Any]:
        if not cursor:
            return {}
        try:
            state = json.loads(cursor)
        except ValueError:
            state = None
        if not isinstance(state, dict) or not (
            state.get("since_id") is None or _is_id(state["since_id"])
        ):
            raise PermanentError("the saved Shopify position is unreadable: recreate the import")
        return state

    def _get(self, params: dict[str, Any]) -> httpx.Response:
        """A 2xx response, or a 400 for the caller to read; raises on the rest."""
        wait = self._pause_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        response = http.send(
            self._client, "GET", PATH, service="Shopify", params=params, accept={400}
        )
        self._note_bucket(response.headers.get(CALL_LIMIT, ""))
        if response.status_code == 400:
            log.warning("Shopify GET %s answered HTTP 400", PATH)
        return response

    def _note_bucket(self, header: str) -> None:
        """Slows down when the bucket is nearly full: waits until it drained below the mark."""
        used, _, size = header.partition("/")
        try:
            level, capacity = int(used), int(size)
        except ValueError:
            return
        high = capacity * BUCKET_HIGH_WATER
        if capacity > 0 and level >= high:
            self._pause_until = time.monotonic() + (level - high + 1) / LEAK_PER_SECOND


def _json(response: httpx.Response, key: str) -> Any:
    try:
        return response.json()[key]
    except (ValueError, KeyError, TypeError):
        raise RetryableError(f"Shopify sent an unreadable {key}") from None


def _shop_finding(response: httpx.Response, external_account: str) -> Finding:
    shop = _json(response, "shop")
    domain = text_of(shop.get("myshopify_domain") if isinstance(shop, dict) else None)
    if shop_handle(domain) == shop_handle(external_account):
        return Finding("external account", True, f"the access token is the shop {domain}'s")
    return Finding(
        "external account",
        False,
        f"the access token is the shop {domain or '(unnamed)'}'s, not "
        f"{external_account}.myshopify.com's: use the token of {external_account}'s app, or "
        f"import from {shop_handle(domain)}",
    )


def _scopes_finding(response: httpx.Response) -> Finding:
    scopes = _json(response, "access_scopes")
    handles = (
        {text_of(s.get("handle")) for s in scopes if isinstance(s, dict)}
        if isinstance(scopes, list)
        else set()
    )
    if handles & CUSTOMER_SCOPES:
        return Finding("scopes", True, "the app may read the shop's customers (read_customers)")
    granted = ", ".join(sorted(handles)) or "none"
    return Finding(
        "scopes",
        False,
        f"the app may not read customers: it needs the access scope read_customers (granted: "
        f"{granted}); add it to the app's Admin API scopes and install the app again",
    )


def _bucket_finding(header: str) -> Finding:
    """The leaky bucket's level: ok while a call is left in it."""
    used, _, size = header.partition("/")
    try:
        level, capacity = int(used), int(size)
    except ValueError:
        return Finding("quota", True, "Shopify did not say how full its call bucket is")
    detail = (
        f"{level} of the {capacity} calls of Shopify's bucket are used (it empties by "
        f"{LEAK_PER_SECOND:g} a second on a standard plan)"
    )
    return Finding("quota", level < capacity, detail)


def connect(target: ImportTarget, settings: Mapping[str, str]) -> ShopifyConnector:
    shop = target.external_account
    return ShopifyConnector(
        shop, target.credentials.access_token, base_url=base_url_of(shop, settings["url"])
    )


SOURCE = Source(
    id="shopify",
    display_name="Shopify",
    description="the customers of a Shopify store (Admin REST API), with an access token",
    criteria_type=ShopifyCriteria,
    criteria_description=(
        "all customers, only those subscribed to email marketing, and/or those with a customer tag"
    ),
    fields=(
        FieldSpec("total_spent", "Total Spent"),
        FieldSpec("orders_count", "Orders Count"),
        FieldSpec("tags", "Tags"),
        FieldSpec("company", "Company"),
        FieldSpec("country", "Country"),
    ),
    normalize_account=normalize_account,
    account_identity=shop_handle,
    external_account_help="the shop's handle, e.g. my-store or my-store.myshopify.com",
    connect=connect,
    settings=(
        Setting(
            "url",
            "AUTOIMPORT_SHOPIFY_URL",
            "",
            "Admin API base URL for every shop",
            url=True,
            when_empty="each shop's own https://{shop}.myshopify.com",
        ),
    ),
)

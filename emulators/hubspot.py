"""An emulator of HubSpot's CRM v3 contacts API, served over real HTTP on loopback.

It reproduces the wire format of ../shared/reference/external-apis.md section 3:
`POST /crm/v3/objects/contacts/search` with filterGroups (groups ORed, filters ANDed; EQ, NEQ,
LT, LTE, GT, GTE, BETWEEN, IN, NOT_IN, HAS_PROPERTY, NOT_HAS_PROPERTY, CONTAINS_TOKEN), at most
5 groups, 6 filters a group and 18 in all, one sort, `limit` up to 200 (default 10), `after` an
integer offset sent as a string, and a 400 for a page that would reach past the 10,000th
result; datetime filters compare epoch milliseconds, `hs_object_id` compares as a number.
Contacts sharing a sort value come back in an arbitrary (hash) order, not by id. Archived
contacts never appear in search, and with `index_lag` a change stays invisible to search for
that many seconds (search shows the contact as it was). Search answers carry no rate-limit
headers; more than 5 searches within a second get HubSpot's 429 (policyName SECONDLY).
`GET /crm/v3/objects/contacts` lists by id (limit up to 100, an `after` cursor, `archived=true`
for only the archived ones). A wrong token gets 401 (category INVALID_AUTHENTICATION); a token
without `crm.objects.contacts.read` in `scopes` gets 403 (category MISSING_SCOPES, the scopes
needed in errors[].context.requiredGranularScopes) from search and list.

The connection check's read: `GET /account-info/v3/details` ({portalId (a number), accountType,
timeZone, companyCurrency, additionalCurrencies, utcOffset, utcOffsetMilliseconds, uiDomain,
dataHostingLocation}). Answers other than search's carry the ten-second limit's headers and, for
a private app's token (not `oauth`), X-HubSpot-RateLimit-Daily and -Daily-Remaining.

Requests, faults and early retries (after a 429, before its window rolled or its Retry-After
passed) are recorded as emulators/server.py does for every emulator.

`python -m emulators.hubspot --port 8082 --contacts 5000` serves it alone.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import functools
import hashlib
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from emulators.server import Answer, LoopbackEmulator, Request, main

SEARCH_PATH = "/crm/v3/objects/contacts/search"
DETAILS_PATH = "/account-info/v3/details"
CONTACTS_READ = "crm.objects.contacts.read"
LIST_PATH = "/crm/v3/objects/contacts"
DEFAULT_PROPERTIES = (
    "createdate",
    "email",
    "firstname",
    "lastname",
    "lastmodifieddate",
    "hs_object_id",
)
DATETIME_PROPERTIES = frozenset({"createdate", "lastmodifieddate"})
NUMBER_PROPERTIES = frozenset({"hs_object_id"})
OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
MAX_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 6, 18
MAX_SEARCH_LIMIT, MAX_LIST_LIMIT, MAX_RESULTS = 200, 100, 10_000
MAX_BODY = 3000
STAGES = ("lead", "subscriber", "customer", "marketingqualifiedlead", "opportunity", None)
JOB_TITLES = ("Engineer", "Buyer", "Head of Marketing")


def hubspot_time(instant: datetime) -> str:
    """An instant as HubSpot writes it: UTC, milliseconds, a Z."""
    instant = instant.astimezone(UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"


@functools.lru_cache(maxsize=65536)
def to_ms(value: str) -> int:
    """A datetime property ("2025-03-01T12:00:00.000Z") or filter value (epoch ms) in ms."""
    if value.lstrip("-").isdigit():
        return int(value)
    instant = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def error_body(message: str, category: str, **extra: Any) -> dict[str, Any]:
    """HubSpot's general error model."""
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        **extra,
    }


def missing_scopes(*scopes: str) -> dict[str, Any]:
    return error_body(
        "This app hasn't been granted all required scopes to make this call. Read more about "
        "required scopes here: https://developers.hubspot.com/scopes.",
        "MISSING_SCOPES",
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": list(scopes)},
            }
        ],
        links={"scopes": "https://developers.hubspot.com/scopes"},
    )


def rate_limit_body(policy: str) -> dict[str, Any]:
    which = {"SECONDLY": "secondly", "TEN_SECONDLY_ROLLING": "ten second", "DAILY": "daily"}
    return {
        "status": "error",
        "message": f"You have reached your {which.get(policy, policy.lower())} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
    }


class BadRequest(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class HubSpotEmulator(LoopbackEmulator):
    portal_id: str = "12345678"
    access_token: str = "pat-na1-emulator-secret-0123456789abcdef"
    # Seconds a change stays invisible to search (search shows the contact as it was).
    index_lag: float = 0.0
    # How long ago contacts added or updated without a time were modified: past a connector's
    # lag, so that tests need not wait for it.
    modified_ago: timedelta = timedelta(minutes=2)
    # The token's scopes; `oauth`: it is an OAuth app's (no daily-limit headers).
    scopes: set[str] = field(default_factory=lambda: {CONTACTS_READ})
    oauth: bool = False
    daily_limit: int = 250_000
    searches_per_second: int = 5
    # How long an injected 429 without Retry-After throttles, by policy.
    secondly_window: float = 1.0
    ten_secondly_window: float = 10.0
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    _searches: deque[float] = field(default_factory=deque)  # monotonic times, last second
    _throttle_policy: str = "SECONDLY"
    # id -> (monotonic time the latest change becomes searchable, the version shown until then)
    _indexing: dict[str, tuple[float, dict[str, Any] | None]] = field(default_factory=dict)
    _next_id: int = 99_900  # ids soon pass 100000: string order differs from numeric order

    # -- data ------------------------------------------------------------------------------

    def add_contacts(
        self,
        count: int,
        *,
        modified_at: datetime | None = None,
        ties: int = 50,
        step: timedelta = timedelta(seconds=1),
    ) -> list[str]:
        """`count` contacts, `ties` of them sharing each lastmodifieddate, `step` apart from
        `modified_at` on; by default the last ones were modified `modified_ago` ago."""
        ties = max(ties, 1)
        groups = -(-count // ties)
        if modified_at is None:
            modified_at = datetime.now(UTC) - self.modified_ago - step * max(groups - 1, 0)
        ids = []
        with self.lock:
            for n in range(count):
                self._next_id += 1 + n % 3
                number = len(self.contacts)
                contact_id = str(self._next_id)
                modified = hubspot_time(modified_at + step * (n // ties))
                created = hubspot_time(modified_at - timedelta(days=30))
                properties = {
                    "createdate": created,
                    "email": self._email_of(number),
                    "firstname": f"First{number}" if number % 13 != 5 else None,
                    "lastname": f"Last{number}" if number % 13 != 6 else None,
                    "phone": f"+1415555{number % 10000:04d}" if number % 3 == 0 else None,
                    "company": f"Company {number % 11}" if number % 2 == 0 else None,
                    "jobtitle": JOB_TITLES[number % 3] if number % 4 == 1 else None,
                    "lifecyclestage": STAGES[number % len(STAGES)],
                    "hs_email_optout": "true" if number % 9 == 4 else "false",
                    "lastmodifieddate": modified,
                    "hs_object_id": contact_id,
                }
                self.contacts[contact_id] = {
                    "id": contact_id,
                    "properties": properties,
                    "createdAt": created,
                    "updatedAt": modified,
                    "archived": False,
                    "archivedAt": None,
                }
                self._hide_until_indexed(contact_id, None)
                ids.append(contact_id)
        return ids

    @staticmethod
    def _email_of(number: int) -> str | None:
        if number % 50 == 7:
            return None  # HubSpot keeps contacts without an email
        if number % 97 == 13:
            return f"contact{number:06d}.example.com"  # not an address
        return f"contact{number:06d}@example.com"

    def update(
        self, contact_id: str, modified_at: datetime | None = None, **properties: Any
    ) -> None:
        """Changes a contact; its lastmodifieddate becomes `modified_at` (default: now minus
        `modified_ago`). With an index lag, search shows the previous version for a while."""
        with self.lock:
            contact = self.contacts[contact_id]
            self._hide_until_indexed(contact_id, copy.deepcopy(self._searchable(contact_id)))
            modified = hubspot_time(modified_at or datetime.now(UTC) - self.modified_ago)
            contact["properties"].update(properties, lastmodifieddate=modified)
            contact["updatedAt"] = modified

    def archive(self, contact_id: str) -> None:
        """Deletes (archives) a contact: gone from search, listed only with archived=true."""
        with self.lock:
            contact = self.contacts[contact_id]
            contact["archived"] = True
            contact["archivedAt"] = hubspot_time(datetime.now(UTC))

    def saturate(self) -> None:
        """This second's searches are used up: the next search gets a SECONDLY 429."""
        with self.lock:
            now = time.monotonic()
            self._searches.extend([now] * self.searches_per_second)

    def max_searches_in_any_second(self) -> int:
        """The most searches (answered or not) that arrived within one second."""
        with self.lock:
            times = sorted(r.monotonic for r in self.requests if r.path == SEARCH_PATH)
        most, start = 0, 0
        for end, at in enumerate(times):
            while times[start] <= at - 1.0:
                start += 1
            most = max(most, end - start + 1)
        return most

    def valid_email_contacts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.contacts.values() if "@" in (c["properties"]["email"] or "")]

    def _hide_until_indexed(self, contact_id: str, shown: dict[str, Any] | None) -> None:
        if self.index_lag > 0:
            self._indexing[contact_id] = (time.monotonic() + self.index_lag, shown)

    def _searchable(self, contact_id: str) -> dict[str, Any] | None:
        """The contact as search sees it now: None when not (yet) indexed or archived."""
        contact = self.contacts[contact_id]
        if contact["archived"]:
            return None
        pending = self._indexing.get(contact_id)
        if pending is not None:
            visible_at, shown = pending
            if time.monotonic() < visible_at:
                return shown
            del self._indexing[contact_id]
        return contact

    # -- one request -----------------------------------------------------------------------

    def respond(self, request: Request) -> Answer:
        if request.headers.get("Authorization") != f"Bearer {self.access_token}":
            return 401, {}, self._unauthorized(request.headers.get("Authorization"))
        if request.path.startswith(LIST_PATH) and CONTACTS_READ not in self.scopes:
            return 403, {}, missing_scopes(CONTACTS_READ)
        now = request.monotonic
        search = request.method == "POST" and request.path == SEARCH_PATH
        if self.held_off(request):
            return 429, {}, rate_limit_body(self._throttle_policy)
        if search:
            while self._searches and self._searches[0] <= now - 1.0:
                self._searches.popleft()
            if len(self._searches) >= self.searches_per_second:
                self._throttle(self._searches[0] + 1.0, "SECONDLY")
                return 429, {}, rate_limit_body("SECONDLY")
            self._searches.append(now)
        fault = self.take_fault(request)
        if fault is not None:
            status, headers, body = fault.answer()
            if status == 429:
                self._throttle_for(now, headers, body)
            return status, headers, body
        try:
            if search:
                if request.size > MAX_BODY:
                    raise BadRequest(f"Request body is longer than {MAX_BODY} characters.")
                return 200, {}, self._search(request.body)
            if request.method == "GET" and request.path == DETAILS_PATH:
                return 200, self._limit_headers(), self._details()
            if request.method == "GET" and request.path == LIST_PATH:
                return 200, self._limit_headers(), self._list(request.params)
        except BadRequest as e:
            return 400, {}, error_body(e.message, "VALIDATION_ERROR")
        return 404, {}, error_body(f"No route for {request.method} {request.path}", "NOT_FOUND")

    def _unauthorized(self, authorization: str | None) -> dict[str, Any]:
        if not authorization:
            message = (
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview"
            )
        else:
            message = "Authentication credentials are invalid, expired or revoked."
        return error_body(message, "INVALID_AUTHENTICATION")

    def _throttle(self, until: float, policy: str) -> None:
        if until > self._not_before:
            self._throttle_policy = policy
            self.hold_off(until)

    def _throttle_for(self, now: float, headers: dict[str, str], body: Any) -> None:
        policy = body.get("policyName", "SECONDLY") if isinstance(body, dict) else "SECONDLY"
        if "Retry-After" in headers:
            self._throttle(now + float(headers["Retry-After"]), policy)
        elif policy == "DAILY":
            self._throttle(math.inf, policy)
        elif policy == "TEN_SECONDLY_ROLLING":
            self._throttle(now + self.ten_secondly_window, policy)
        else:
            self._throttle(now + self.secondly_window, policy)

    # -- search ----------------------------------------------------------------------------

    def _search(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest("Invalid input JSON: expected an object.")
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
            raise BadRequest(f"Too many filter groups: at most {MAX_GROUPS} are allowed.")
        total_filters = 0
        for group in groups:
            filters = group.get("filters") if isinstance(group, dict) else None
            if not isinstance(filters, list):
                raise BadRequest("Each filter group must have a list of filters.")
            if len(filters) > MAX_FILTERS_PER_GROUP:
                raise BadRequest(
                    f"Too many filters in a group: at most {MAX_FILTERS_PER_GROUP} are allowed."
                )
            total_filters += len(filters)
            for one in filters:
                self._check_filter(one)
        if total_filters > MAX_FILTERS:
            raise BadRequest(f"Too many filters: at most {MAX_FILTERS} are allowed in all.")
        sorts = body.get("sorts") or []
        if not isinstance(sorts, list) or len(sorts) > 1:
            raise BadRequest("Only one sort is allowed.")
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 200:
            raise BadRequest(f"limit must be between 1 and {MAX_SEARCH_LIMIT}.")
        after_value = body.get("after", "0")
        try:
            after = int(after_value or 0)
        except (TypeError, ValueError):
            raise BadRequest(
                f'Cannot deserialize value of type `int` from String "{after_value}": not a '
                "valid `int` value"
            ) from None
        if after < 0:
            raise BadRequest("after must not be negative.")
        if after >= MAX_RESULTS:
            raise BadRequest(self._ceiling(after))

        found = [
            c
            for c in (self._searchable(i) for i in list(self.contacts))
            if c is not None
            and (not groups or any(self._matches_group(g, c["properties"]) for g in groups))
            and self._matches_query(body.get("query"), c["properties"])
        ]
        found = self._sorted(found, sorts[0] if sorts else None)
        page = found[after : after + limit]
        if after + len(page) > MAX_RESULTS:
            raise BadRequest(self._ceiling(after + len(page)))
        wanted = [*DEFAULT_PROPERTIES, *(body.get("properties") or [])]
        answer: dict[str, Any] = {
            "total": len(found),
            "results": [self._shown(c, wanted) for c in page],
        }
        if after + len(page) < len(found):
            answer["paging"] = {"next": {"after": str(after + len(page))}}
        return answer

    @staticmethod
    def _ceiling(end: int) -> str:
        return (
            f"Search can return at most {MAX_RESULTS} results for one query: this page would "
            f"end at result {end}. Narrow the filters."
        )

    @staticmethod
    def _check_filter(one: Any) -> None:
        if not isinstance(one, dict) or not one.get("propertyName"):
            raise BadRequest("Each filter needs a propertyName.")
        operator = one.get("operator", "EQ")
        if operator not in OPERATORS:
            raise BadRequest(f"Unknown operator {operator!r}.")
        if operator in ("IN", "NOT_IN"):
            if not isinstance(one.get("values"), list):
                raise BadRequest(f"{operator} needs `values`, a list.")
        elif operator == "BETWEEN":
            if one.get("value") is None or one.get("highValue") is None:
                raise BadRequest("BETWEEN needs `value` and `highValue`.")
        elif operator not in ("HAS_PROPERTY", "NOT_HAS_PROPERTY") and one.get("value") is None:
            raise BadRequest(f"{operator} needs a `value`.")

    def _matches_group(self, group: dict[str, Any], properties: dict[str, Any]) -> bool:
        return all(self._matches(one, properties) for one in group["filters"])

    @staticmethod
    def _matches(one: dict[str, Any], properties: dict[str, Any]) -> bool:
        name, operator = one["propertyName"], one.get("operator", "EQ")
        actual = properties.get(name)
        present = actual is not None and actual != ""
        if operator == "HAS_PROPERTY":
            return present
        if operator == "NOT_HAS_PROPERTY":
            return not present
        if operator in ("IN", "NOT_IN"):
            values = {_key(name, v) for v in one["values"]}
            inside = present and _key(name, actual) in values
            return inside if operator == "IN" else not inside
        if operator == "NEQ":
            return not present or _key(name, actual) != _key(name, one["value"])
        if not present:
            return False
        if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            pattern = str(one["value"]).lower()
            text = str(actual).lower()
            hit = fnmatch.fnmatch(text, pattern) or any(
                fnmatch.fnmatch(token, pattern) for token in text.replace("@", " ").split()
            )
            return hit if operator == "CONTAINS_TOKEN" else not hit
        value = _key(name, actual)
        low = _key(name, one["value"])
        if operator == "BETWEEN":
            return low <= value <= _key(name, one["highValue"])
        return {
            "EQ": value == low,
            "LT": value < low,
            "LTE": value <= low,
            "GT": value > low,
            "GTE": value >= low,
        }[operator]

    @staticmethod
    def _matches_query(query: Any, properties: dict[str, Any]) -> bool:
        if not query:
            return True
        wanted = str(query).lower()
        return any(
            wanted in str(properties.get(name) or "").lower()
            for name in ("email", "firstname", "lastname", "phone", "company")
        )

    @staticmethod
    def _sorted(found: list[dict[str, Any]], sort: Any) -> list[dict[str, Any]]:
        if sort is None:  # creation order, oldest first
            return sorted(found, key=lambda c: (to_ms(c["createdAt"]), int(c["id"])))
        if isinstance(sort, str):
            name, descending = sort.lstrip("-"), sort.startswith("-")
        else:
            name, descending = sort.get("propertyName", ""), sort.get("direction") == "DESCENDING"
        # Ties come back in an order of the index's own (here: a hash of the id), not by id.
        tied = sorted(found, key=lambda c: hashlib.sha1(c["id"].encode()).digest())
        present = [c for c in tied if c["properties"].get(name) not in (None, "")]
        missing = [c for c in tied if c["properties"].get(name) in (None, "")]
        present.sort(key=lambda c: _key(name, c["properties"][name]), reverse=descending)
        return present + missing

    @staticmethod
    def _shown(contact: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        properties = contact["properties"]
        return {
            "id": contact["id"],
            "properties": {name: properties.get(name) for name in dict.fromkeys(wanted)},
            "createdAt": contact["createdAt"],
            "updatedAt": contact["updatedAt"],
            "archived": False,
        }

    # -- list ------------------------------------------------------------------------------

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            limit = int(query.get("limit", ["10"])[-1])
        except ValueError:
            raise BadRequest("limit must be a number.") from None
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}.")
        after = query.get("after", [""])[-1]
        if after and not after.isdigit():
            raise BadRequest(f"Invalid after cursor {after!r}.")
        archived = query.get("archived", ["false"])[-1].lower() == "true"
        wanted = [*DEFAULT_PROPERTIES]
        for value in query.get("properties", []):  # comma-separated or repeated
            wanted += [name for name in value.split(",") if name]
        listed = sorted(
            (
                c
                for c in self.contacts.values()
                if c["archived"] == archived and (not after or int(c["id"]) >= int(after))
            ),
            key=lambda c: int(c["id"]),
        )
        page = listed[:limit]
        results = []
        for contact in page:
            shown = self._shown(contact, wanted)
            shown["archived"] = contact["archived"]
            if contact["archived"]:
                shown["archivedAt"] = contact["archivedAt"]
            results.append(shown)
        answer: dict[str, Any] = {"results": results}
        if len(listed) > limit:
            following = listed[limit]["id"]
            link = f"{self.url}{LIST_PATH}?{urlencode({'after': following, 'limit': limit})}"
            answer["paging"] = {"next": {"after": following, "link": link}}
        return answer

    def _limit_headers(self) -> dict[str, str]:
        # Non-search answers carry the ten-second limit's headers (search answers do not), and
        # the daily limit's for a private app.
        headers = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": "190",
            "X-HubSpot-RateLimit-Remaining": "189",
        }
        if not self.oauth:
            used = len(self.requests)
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, self.daily_limit - used))
        return headers

    def _details(self) -> dict[str, Any]:
        return {
            "portalId": int(self.portal_id),
            "accountType": "STANDARD",
            "timeZone": "Europe/Berlin",
            "companyCurrency": "EUR",
            "additionalCurrencies": [],
            "utcOffset": "+01:00",
            "utcOffsetMilliseconds": 3_600_000,
            "uiDomain": "app-eu1.hubspot.com",
            "dataHostingLocation": "eu1",
        }


def _key(name: str, value: Any) -> Any:
    """A property value as search compares it: ms for datetimes, numbers, else folded text."""
    if name in DATETIME_PROPERTIES:
        try:
            return to_ms(str(value))
        except ValueError:
            raise BadRequest(f"{value!r} is not a datetime for {name}.") from None
    if name in NUMBER_PROPERTIES:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise BadRequest(f"{value!r} is not a number for {name}.") from None
    return str(value).lower()


def _build(args: argparse.Namespace) -> HubSpotEmulator:
    emulator = HubSpotEmulator(
        portal_id=args.portal, access_token=args.token, index_lag=args.index_lag
    )
    emulator.add_contacts(args.contacts)
    return emulator


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--portal", default="12345678")
    parser.add_argument("--token", default="pat-na1-emulator-secret-0123456789abcdef")
    parser.add_argument("--index-lag", type=float, default=0.0)


if __name__ == "__main__":
    main(
        __doc__,
        8082,
        _build,
        lambda e: [
            f"HubSpot emulator for portal {e.portal_id} listening on {e.url}",
            f"access token: {e.access_token}",
        ],
        _arguments,
    )

"""An emulator of Google's People API connections list and OAuth token endpoint, served over
real HTTP on loopback.

It reproduces the wire format of ../shared/reference/external-apis.md section 1:
`GET /v1/people/me/connections` with `personFields` (required), `pageSize` (1..1000, default
100), `pageToken`, `syncToken`, `requestSyncToken`; `nextPageToken` on every page but the last,
`nextSyncToken` on the last page only and only when asked for, `totalItems`. Page and sync tokens
bind the request's other parameters: a request whose parameters differ from its chain's first
request gets 400 INVALID_ARGUMENT. An incremental chain returns the persons changed after its
sync token, deleted ones as tombstones ({resourceName, etag, metadata: {sources, deleted}}).
Expired sync tokens get Google's 400 EXPIRED_SYNC_TOKEN (status string and HTTP status
configurable). Errors are google.rpc.Status bodies.

OAuth: `POST /token` (grant_type=refresh_token) checks the client id and secret (401
invalid_client) and the refresh token (400 invalid_grant once revoked), and issues access tokens
that expire, with the scopes of their grant; People requests with an unknown or expired token get
401 UNAUTHENTICATED, and with a token whose grant lacks the method's scopes 403 PERMISSION_DENIED
(ErrorInfo reason ACCESS_TOKEN_SCOPE_INSUFFICIENT, the WWW-Authenticate insufficient_scope
challenge). The scopes each method accepts are those of its reference page.

The connection check's reads: `GET /v1/people/me` (personFields required) answers the account
owner's person; its emailAddresses are shown only to a grant with an email scope (userinfo.email
or user.emails.read: an inference, not stated by the reference), `owner_email` as the ACCOUNT
source's primary one. `GET /v1/contactGroups/{id}` (groupFields optional) answers a group of
`groups`, else 404 NOT_FOUND.

Rate limits: 429 RESOURCE_EXHAUSTED on demand (`throttle`) or from a per-second / per-minute
quota (sliding windows). Requests, faults (on People requests unless a fault names /token) and
early retries are recorded as emulators/server.py does for every emulator: a People request
made less than `min_backoff` seconds (or the Retry-After given, when larger) after a 429 or a
rate-limit 403 is an early retry.

`python -m emulators.google_contacts --port 8083 --contacts 5000` serves it alone.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from emulators.server import Answer, Fault, LoopbackEmulator, Request, main

PATH = "/v1/people/me/connections"
ME_PATH = "/v1/people/me"
GROUPS_PATH = "/v1/contactGroups/"
TOKEN_PATH = "/token"
MY_CONTACTS = "contactGroups/myContacts"
OTHER_GROUP = "contactGroups/5a1b2c3d4e5f6071"
_AUTH = "https://www.googleapis.com/auth/"
SCOPE = _AUTH + "contacts.readonly"
EMAIL_SCOPE = _AUTH + "userinfo.email"
# What a person grants the import when connecting the account: the contacts, and whose they are.
GRANTED = frozenset({SCOPE, EMAIL_SCOPE})
# The scopes each method accepts (its reference page's "Authorization scopes").
CONTACT_SCOPES = frozenset({_AUTH + "contacts", SCOPE})
EMAIL_SCOPES = frozenset({EMAIL_SCOPE, _AUTH + "user.emails.read"})
PROFILE_SCOPES = CONTACT_SCOPES | EMAIL_SCOPES | {_AUTH + "userinfo.profile"}
GROUP_FIELDS = frozenset({"clientData", "groupType", "memberCount", "metadata", "name"})
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
PERSON_FIELDS = frozenset(
    {
        "addresses",
        "biographies",
        "birthdays",
        "emailAddresses",
        "memberships",
        "metadata",
        "names",
        "organizations",
        "phoneNumbers",
        "photos",
        "urls",
        "userDefined",
    }
)
# Parameters that are not part of what a page or sync token binds.
CHAIN_FREE = frozenset({"pageToken", "syncToken", "key", "prettyPrint", "quotaUser", "fields"})
EXPIRED_MESSAGE = "Sync token is expired. Clear local cache and retry call without the sync token."
TITLES = ("Engineer", "Account Manager", "Designer", "Founder", "")
TEXT_BIRTHDAYS = ("March 14", "around new year", "12/24")


def google_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def status_body(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    """A google.rpc.Status error body."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


def error_info(reason: str, domain: str = "googleapis.com", **metadata: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": domain,
    }
    if metadata:
        info["metadata"] = metadata
    return info


INVALID_ARGUMENT = status_body(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
NOT_FOUND = status_body(404, "NOT_FOUND", "Requested entity was not found.")
RESOURCE_EXHAUSTED = status_body(
    429,
    "RESOURCE_EXHAUSTED",
    "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per "
    "user' of service 'people.googleapis.com' for consumer 'project_number:123456789012'.",
    error_info(
        "RATE_LIMIT_EXCEEDED",
        quota_metric="people.googleapis.com/read_requests",
        quota_limit="ReadRequestsPerMinutePerUser",
        service="people.googleapis.com",
        consumer="projects/123456789012",
    ),
    {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"subject": "project_number:123456789012"}],
    },
)
RATE_LIMITED_403 = {  # the legacy shape, with a rate-limit reason: a client retries it
    "error": {
        "code": 403,
        "message": "User Rate Limit Exceeded",
        "errors": [
            {
                "message": "User Rate Limit Exceeded",
                "domain": "usageLimits",
                "reason": ("userRateLimitExceeded"),
            }
        ],
        "status": "PERMISSION_DENIED",
    }
}


def unauthenticated(reason: str) -> dict[str, Any]:
    return status_body(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        error_info(
            reason,
            service="people.googleapis.com",
            method="google.internal.people.v2.minimal.PeopleServiceMinimal.ListConnections",
        ),
    )


def scope_insufficient(method: str) -> dict[str, Any]:
    return status_body(
        403,
        "PERMISSION_DENIED",
        "Request had insufficient authentication scopes.",
        error_info(
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            service="people.googleapis.com",
            method=f"google.people.v1.{method}",
        ),
    )


def _encode(kind: str, state: dict[str, Any]) -> str:
    raw = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    return kind + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(kind: str, token: str) -> dict[str, Any] | None:
    if not token.startswith(kind):
        return None
    data = token[len(kind) :]
    try:
        state = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def _fingerprint(query: dict[str, str]) -> str:
    bound = sorted((k, v) for k, v in query.items() if k not in CHAIN_FREE)
    return hashlib.sha256(json.dumps(bound).encode()).hexdigest()[:16]


@dataclass
class Entry:
    """One person as the store keeps it: its JSON (None once deleted), the change sequence
    number of its last change, when it was created, and its tombstone once deleted."""

    person: dict[str, Any] | None
    seq: int
    created: int
    order: int
    tombstone: dict[str, Any] | None = None


@dataclass
class GoogleContactsEmulator(LoopbackEmulator):
    client_id: str = "123456789012-emulator.apps.googleusercontent.com"
    client_secret: str = "GOCSPX-emulator-client-secret-0123"
    access_token_lifetime: float = 3600.0  # seconds
    # The expired-sync-token answer: Google's status string and HTTP status vary between reports.
    expired_status: str = "FAILED_PRECONDITION"
    expired_http_status: int = 400
    # Refreshes also return a new refresh token (Google does not, usually).
    rotate_refresh_tokens: bool = False
    # Quotas of People requests (sliding windows); None: unlimited.
    quota_per_second: int | None = None
    quota_per_minute: int | None = None
    # Sent as Retry-After with 429s when set (Google documents none).
    retry_after: float | None = None
    # The account's own address (people/me), and its contact groups: resource name → name.
    owner_email: str = "owner@example.com"
    groups: dict[str, str] = field(
        default_factory=lambda: {MY_CONTACTS: "myContacts", OTHER_GROUP: "Customers"}
    )
    entries: dict[str, Entry] = field(default_factory=dict)
    refreshes: int = 0
    access_token: str = ""
    refresh_token: str = ""
    _seq: int = 0
    _sync_epoch: int = 0
    _page_epoch: int = 0
    _access_tokens: dict[str, float] = field(default_factory=dict)  # token → expiry (time())
    _refresh_tokens: set[str] = field(default_factory=set)
    _scopes: dict[str, frozenset[str]] = field(default_factory=dict)  # token → its grant's
    _issued: set[str] = field(default_factory=set)  # every token ever issued
    _served: deque[float] = field(default_factory=deque)  # People requests served (quota)
    _next_number: int = 0

    def __post_init__(self) -> None:
        if not self.access_token:
            self.access_token, self.refresh_token = self.grant()

    # -- OAuth -------------------------------------------------------------------------------

    def grant(self, scopes: frozenset[str] = GRANTED) -> tuple[str, str]:
        """A new access token and refresh token, as when a person (re)connects the account
        allowing `scopes`."""
        with self.lock:
            refresh_token = "1//0e" + secrets.token_urlsafe(32)
            self._refresh_tokens.add(refresh_token)
            self._issued.add(refresh_token)
            self._scopes[refresh_token] = frozenset(scopes)
            return self._issue(scopes), refresh_token

    def _issue(self, scopes: frozenset[str]) -> str:
        token = "ya29.a0" + secrets.token_urlsafe(40)
        self._access_tokens[token] = time.time() + self.access_token_lifetime
        self._issued.add(token)
        self._scopes[token] = frozenset(scopes)
        return token

    def limit_scopes(self, scopes: frozenset[str]) -> None:
        """Every grant so far allows only `scopes` (as if the person had unticked the others
        when connecting): its tokens, and those refreshed from it."""
        with self.lock:
            for token in self._scopes:
                self._scopes[token] = frozenset(scopes)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far has expired."""
        with self.lock:
            for token in self._access_tokens:
                self._access_tokens[token] = 0.0

    def revoke_refresh_token(self, refresh_token: str | None = None) -> None:
        """The person revoked the grant: refreshes get invalid_grant. Default: every refresh
        token issued so far."""
        with self.lock:
            if refresh_token is None:
                self._refresh_tokens.clear()
            else:
                self._refresh_tokens.discard(refresh_token)

    # -- data --------------------------------------------------------------------------------

    def _change(self) -> int:
        self._seq += 1
        return self._seq

    def add_people(
        self,
        count: int,
        *,
        without_email_every: int = 17,
        invalid_email_every: int = 53,
        other_group_every: int = 5,
    ) -> list[str]:
        """`count` persons in contactGroups/myContacts, every `other_group_every`th also in
        OTHER_GROUP; every `without_email_every`th has no email, every `invalid_email_every`th
        an invalid one (0: none). Primary items are not always first."""
        now = datetime.now(UTC)
        names = []
        with self.lock:
            for _ in range(count):
                self._next_number += 1
                n = self._next_number
                resource_name = f"people/c{8_123_456_789_000_000_000 + n * 7_919}"
                source = {"type": "CONTACT", "id": f"{n * 2_654_435_761 % 16**16:016x}"}
                person: dict[str, Any] = {
                    "resourceName": resource_name,
                    "metadata": {
                        "sources": [{**source, "updateTime": google_time(now)}],
                        "objectType": "PERSON",
                    },
                    "names": [
                        {
                            "metadata": {"primary": True, "source": source},
                            "displayName": f"First{n} Last{n}",
                            "familyName": f"Last{n}",
                            "givenName": f"First{n}",
                            "displayNameLastFirst": f"Last{n}, First{n}",
                            "unstructuredName": f"First{n} Last{n}",
                        }
                    ],
                    "memberships": [],
                }
                if not (without_email_every and n % without_email_every == 0):
                    good = f"person{n:06d}@example.com"
                    bad = f"person{n:06d} at example.com"
                    first = (
                        good if not (invalid_email_every and n % invalid_email_every == 0) else bad
                    )
                    emails = [
                        {
                            "metadata": {"primary": True, "source": source},
                            "value": first,
                            "type": "work",
                            "formattedType": "Work",
                        },
                        {
                            "metadata": {"source": source},
                            "value": f"person{n:06d}.home@example.org",
                            "type": "home",
                            "formattedType": "Home",
                        },
                    ]
                    if n % 3 == 0:
                        emails.append(
                            {
                                "metadata": {"source": source},
                                "value": f"p{n}.old@example.net",
                                "type": "other",
                            }
                        )
                    if n % 2:  # the primary is not first
                        emails.reverse()
                    person["emailAddresses"] = emails
                if n % 3 != 2:
                    phones = [
                        {
                            "metadata": {"primary": True, "source": source},
                            "value": f"(415) 555-{n % 10000:04d}",
                            "canonicalForm": f"+1415555{n % 10000:04d}",
                            "type": "mobile",
                            "formattedType": "Mobile",
                        },
                    ]
                    if n % 3 == 0:
                        phones.insert(
                            0,
                            {
                                "metadata": {"source": source},
                                "value": f"030 {n:07d}",
                                "type": "work",
                            },
                        )
                    person["phoneNumbers"] = phones
                if n % 2 == 0:
                    organizations = [
                        {
                            "metadata": {"primary": True, "source": source},
                            "name": f"Company {n % 11}",
                            "title": TITLES[n % len(TITLES)],
                            "current": True,
                            "type": "work",
                        },
                    ]
                    if n % 4 == 0:
                        organizations.insert(
                            0,
                            {
                                "metadata": {"source": source},
                                "name": "Old Employer",
                                "title": "Intern",
                                "current": False,
                            },
                        )
                    person["organizations"] = organizations
                birthday: dict[str, Any] = {"metadata": {"primary": True, "source": source}}
                match n % 5:
                    case 0:
                        birthday["date"] = {
                            "year": 1960 + n % 40,
                            "month": n % 12 + 1,
                            "day": n % 28 + 1,
                        }
                    case 1:
                        birthday["date"] = {"year": 0, "month": n % 12 + 1, "day": n % 28 + 1}
                    case 2:
                        birthday["date"] = {"month": n % 12 + 1, "day": n % 28 + 1}
                    case 3:
                        birthday["text"] = TEXT_BIRTHDAYS[n % len(TEXT_BIRTHDAYS)]
                if len(birthday) > 1:
                    person["birthdays"] = [birthday]
                groups = [MY_CONTACTS]
                if other_group_every and n % other_group_every == 0:
                    groups.append(OTHER_GROUP)
                person["memberships"] = [self._membership(g, source) for g in groups]
                seq = self._change()
                person["etag"] = self._etag(resource_name, seq)
                self.entries[resource_name] = Entry(person, seq, created=seq, order=n)
                names.append(resource_name)
        return names

    @staticmethod
    def _membership(group: str, source: dict[str, Any]) -> dict[str, Any]:
        return {
            "metadata": {"source": source},
            "contactGroupMembership": {
                "contactGroupId": group.split("/", 1)[1],
                "contactGroupResourceName": group,
            },
        }

    @staticmethod
    def _etag(resource_name: str, seq: int) -> str:
        digest = hashlib.sha256(f"{resource_name}/{seq}".encode()).digest()[:12]
        return "%" + base64.b64encode(digest).decode()

    @property
    def people(self) -> dict[str, dict[str, Any]]:
        """The persons that are not deleted, by resource name."""
        with self.lock:
            return {n: e.person for n, e in self.entries.items() if e.person is not None}

    def primary_email(self, resource_name: str) -> str:
        person = self.entries[resource_name].person or {}
        for item in person.get("emailAddresses", []):
            if item.get("metadata", {}).get("primary"):
                return str(item["value"])
        return ""

    def update(self, resource_name: str, **changes: Any) -> None:
        """Changes a person as a person would in Google Contacts: given_name, family_name,
        email (the primary one), phone, company, job_title, birthday ({year, month, day} or
        text), groups (resource names); or any Person field by its JSON name."""
        with self.lock:
            entry = self.entries[resource_name]
            person = entry.person
            if person is None:
                raise KeyError(f"{resource_name} is deleted")
            source = {
                k: v for k, v in person["metadata"]["sources"][0].items() if k in ("type", "id")
            }
            primary_of = {"metadata": {"primary": True, "source": source}}
            for key, value in changes.items():
                if key in ("given_name", "family_name"):
                    name = person.setdefault("names", [dict(primary_of)])[0]
                    name["givenName" if key == "given_name" else "familyName"] = value
                    name["displayName"] = (
                        f"{name.get('givenName', '')} {name.get('familyName', '')}"
                    )
                elif key in ("email", "phone"):
                    items = person.setdefault(
                        "emailAddresses" if key == "email" else "phoneNumbers", []
                    )
                    current = [i for i in items if i.get("metadata", {}).get("primary")]
                    if current:
                        current[0]["value"] = value
                    else:
                        items.append({**primary_of, "value": value})
                elif key in ("company", "job_title"):
                    items = person.setdefault("organizations", [])
                    current = [i for i in items if i.get("metadata", {}).get("primary")]
                    if not current:
                        items.append(dict(primary_of))
                        current = [items[-1]]
                    current[0]["name" if key == "company" else "title"] = value
                elif key == "birthday":
                    value = {"date": value} if isinstance(value, dict) else {"text": value}
                    person["birthdays"] = [{**primary_of, **value}]
                elif key == "groups":
                    person["memberships"] = [self._membership(g, source) for g in value]
                else:
                    person[key] = value
            entry.seq = self._change()
            person["etag"] = self._etag(resource_name, entry.seq)
            person["metadata"]["sources"][0]["updateTime"] = google_time(datetime.now(UTC))

    def delete(self, resource_name: str) -> None:
        """Deletes a person: later incremental chains return its tombstone."""
        with self.lock:
            entry = self.entries[resource_name]
            assert entry.person is not None, f"{resource_name} is already deleted"
            source = entry.person["metadata"]["sources"][0]
            entry.seq = self._change()
            entry.tombstone = {
                "resourceName": resource_name,
                "etag": self._etag(resource_name, entry.seq),
                "metadata": {
                    "sources": [{"type": source["type"], "id": source["id"]}],
                    "deleted": True,
                },
            }
            entry.person = None

    def expire_sync_tokens(self) -> None:
        """Every sync token issued so far has expired (chains under way included)."""
        with self.lock:
            self._sync_epoch += 1

    def invalidate_page_tokens(self) -> None:
        """Every page token issued so far is refused (400 INVALID_ARGUMENT)."""
        with self.lock:
            self._page_epoch += 1

    def throttle(self, count: int = 1) -> None:
        """The next `count` People requests get 429 RESOURCE_EXHAUSTED."""
        with self.lock:
            headers = {} if self.retry_after is None else {"Retry-After": f"{self.retry_after:g}"}
            self.faults[:0] = [Fault(429, headers, RESOURCE_EXHAUSTED) for _ in range(count)]

    def issued_secrets(self) -> set[str]:
        """Every token issued and the client secret: what must never reach a log."""
        with self.lock:
            return {*self._issued, self.client_secret}

    def people_requests(self) -> list[Request]:
        return self.recorded(PATH)

    # -- one request -------------------------------------------------------------------------

    def faultable(self, request: Request) -> bool:
        return request.path == PATH  # /token has faults of its own (Fault(path=TOKEN_PATH))

    def respond(self, request: Request) -> Answer:
        if request.method == "POST" and request.path == TOKEN_PATH:
            fault = self.take_fault(request)
            if fault is not None:
                return fault.answer()
            fields = {k: v[-1] for k, v in parse_qs(request.body, keep_blank_values=True).items()}
            return self._token(fields)
        if request.method == "GET" and (
            request.path in (PATH, ME_PATH) or request.path.startswith(GROUPS_PATH)
        ):
            return self._people(request, request.headers.get("Authorization") or "")
        return 404, {}, NOT_FOUND

    def _token(self, fields: dict[str, str]) -> Answer:
        if fields.get("grant_type") != "refresh_token":
            return (
                400,
                {},
                {
                    "error": "unsupported_grant_type",
                    "error_description": "Invalid grant_type: " + fields.get("grant_type", ""),
                },
            )
        if fields.get("client_id") != self.client_id:
            return (
                401,
                {},
                {
                    "error": "invalid_client",
                    "error_description": "The OAuth client was not found.",
                },
            )
        if fields.get("client_secret") != self.client_secret:
            return 401, {}, {"error": "invalid_client", "error_description": "Unauthorized"}
        if fields.get("refresh_token") not in self._refresh_tokens:
            return (
                400,
                {},
                {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                },
            )
        self.refreshes += 1
        scopes = self._scopes.get(fields["refresh_token"], GRANTED)
        body: dict[str, Any] = {
            "access_token": self._issue(scopes),
            "expires_in": int(self.access_token_lifetime),
            "scope": " ".join(sorted(scopes)),
            "token_type": "Bearer",
        }
        if self.rotate_refresh_tokens:
            self._refresh_tokens.discard(fields["refresh_token"])
            body["refresh_token"] = "1//0e" + secrets.token_urlsafe(32)
            self._refresh_tokens.add(body["refresh_token"])
            self._issued.add(body["refresh_token"])
            self._scopes[body["refresh_token"]] = scopes
        return 200, {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate"}, body

    def _people(self, request: Request, authorization: str) -> tuple[int, dict[str, str], Any]:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return 401, self._challenge(), unauthenticated("CREDENTIALS_MISSING")
        expiry = self._access_tokens.get(token)
        if expiry is None or expiry <= time.time():
            return 401, self._challenge(), unauthenticated("ACCESS_TOKEN_EXPIRED")
        scopes = self._scopes.get(token, GRANTED)
        if request.path == ME_PATH:
            needed, method = PROFILE_SCOPES, "PeopleService.GetPerson"
        elif request.path == PATH:
            needed, method = CONTACT_SCOPES, "PeopleService.ListConnections"
        else:
            needed, method = CONTACT_SCOPES, "ContactGroupService.GetContactGroup"
        if not scopes & needed:
            return 403, self._challenge("insufficient_scope"), scope_insufficient(method)
        now = request.monotonic
        if self._over_quota(now):
            return self._throttled(now, 429, {}, RESOURCE_EXHAUSTED)
        self._served.append(now)
        fault = self.take_fault(request)
        if fault is not None:
            status, headers, body = fault.answer()
            if status == 429 or (status == 403 and "ratelimit" in json.dumps(body).lower()):
                return self._throttled(now, status, headers, body)
            return status, headers, body
        if request.path == ME_PATH:
            return self._me(request.query, scopes)
        if request.path != PATH:
            return self._group(request.path.removeprefix("/v1/"), request.query)
        return self._list(request.query)

    def _me(self, query: dict[str, str], scopes: frozenset[str]) -> Answer:
        fields = [f for f in query.get("personFields", "").split(",") if f]
        if not fields:
            return 400, {}, status_body(400, "INVALID_ARGUMENT", "personFields mask is required.")
        account_id = "1" + hashlib.sha256(self.owner_email.encode()).hexdigest()[:20]
        source = {"type": "PROFILE", "id": account_id}
        me: dict[str, Any] = {
            "resourceName": f"people/{account_id}",
            "etag": self._etag(self.owner_email, 0),
        }
        if "emailAddresses" in fields and scopes & EMAIL_SCOPES:
            me["emailAddresses"] = [
                {
                    "metadata": {
                        "primary": True,
                        "verified": True,
                        "source": {"type": "ACCOUNT", "id": account_id},
                        "sourcePrimary": True,
                    },
                    "value": self.owner_email,
                }
            ]
        if "metadata" in fields:
            me["metadata"] = {"sources": [source], "objectType": "PERSON"}
        return 200, {}, me

    def _group(self, resource_name: str, query: dict[str, str]) -> Answer:
        fields = [f for f in query.get("groupFields", "").split(",") if f]
        unknown = sorted(set(fields) - GROUP_FIELDS)
        if unknown:
            message = f'Invalid groupFields mask path: "{unknown[0]}".'
            return 400, {}, status_body(400, "INVALID_ARGUMENT", message)
        name = self.groups.get(resource_name)
        if name is None:
            return 404, {}, NOT_FOUND
        system = resource_name == MY_CONTACTS
        members = sum(
            1
            for e in self.entries.values()
            if e.person is not None
            and any(
                (m.get("contactGroupMembership") or {}).get("contactGroupResourceName")
                == resource_name
                for m in e.person.get("memberships", [])
            )
        )
        group = {
            "resourceName": resource_name,
            "etag": self._etag(resource_name, 0),
            "metadata": {"updateTime": google_time(datetime.now(UTC))},
            "groupType": "SYSTEM_CONTACT_GROUP" if system else "USER_CONTACT_GROUP",
            "name": name,
            "formattedName": "My Contacts" if system else name,
            "memberCount": members,
        }
        shown = fields or ["metadata", "groupType", "memberCount", "name"]
        return (
            200,
            {},
            {
                k: v
                for k, v in group.items()
                if k in ("resourceName", "etag", "formattedName") or k in shown
            },
        )

    @staticmethod
    def _challenge(error: str = "invalid_token") -> dict[str, str]:
        return {"WWW-Authenticate": f'Bearer realm="https://accounts.google.com/", error="{error}"'}

    def _over_quota(self, now: float) -> bool:
        while self._served and self._served[0] <= now - 60:
            self._served.popleft()
        last_second = sum(1 for at in self._served if at > now - 1)
        return (self.quota_per_second is not None and last_second >= self.quota_per_second) or (
            self.quota_per_minute is not None and len(self._served) >= self.quota_per_minute
        )

    def _throttled(
        self, now: float, status: int, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        headers = dict(headers)
        if status == 429 and self.retry_after is not None and "Retry-After" not in headers:
            headers["Retry-After"] = f"{self.retry_after:g}"
        wait = max(self.min_backoff, float(headers.get("Retry-After", 0) or 0))
        self.hold_off(now + wait)  # for a rate-limit 403 too
        return status, headers, body

    def _list(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        fields = [f for f in query.get("personFields", "").split(",") if f]
        if not fields:
            return (
                400,
                {},
                status_body(
                    400,
                    "INVALID_ARGUMENT",
                    "personFields mask is required. Please specify one or more valid paths. Valid "
                    "paths are documented at https://developers.google.com/people/api/rest/v1/people/get.",
                ),
            )
        unknown = sorted(set(fields) - PERSON_FIELDS)
        if unknown:
            return (
                400,
                {},
                status_body(
                    400, "INVALID_ARGUMENT", f'Invalid personFields mask path: "{unknown[0]}".'
                ),
            )
        try:
            page_size = int(query.get("pageSize") or 0) or DEFAULT_PAGE_SIZE
        except ValueError:
            return 400, {}, INVALID_ARGUMENT
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            return (
                400,
                {},
                status_body(400, "INVALID_ARGUMENT", "pageSize must be between 0 and 1000."),
            )
        fingerprint = _fingerprint(query)
        sync_from: int | None = None
        if "syncToken" in query:
            state = _decode("EhQ", query["syncToken"])
            if state is None or state.get("f") != fingerprint:
                return 400, {}, INVALID_ARGUMENT
            if state.get("e") != self._sync_epoch:
                return (
                    self.expired_http_status,
                    {},
                    status_body(
                        self.expired_http_status,
                        self.expired_status,
                        EXPIRED_MESSAGE,
                        error_info("EXPIRED_SYNC_TOKEN", domain="people.googleapis.com"),
                    ),
                )
            sync_from = int(state["s"])
        if "pageToken" in query:
            page = _decode("GgQ", query["pageToken"])
            if (
                page is None
                or page.get("f") != fingerprint
                or page.get("t") != query.get("syncToken", "")
                or page.get("e") != self._page_epoch
            ):
                return 400, {}, INVALID_ARGUMENT
            upto, after = int(page["u"]), page["a"]
        else:
            upto, after = self._seq, None
        if sync_from is None:  # a full sync: the persons there were when the chain started
            selected = sorted(
                (e for e in self.entries.values() if e.person is not None and e.created <= upto),
                key=lambda e: e.order,
            )
            keyed = [(e.order, e.person) for e in selected]
        else:  # the changes after the sync token, up to the chain's start, oldest first
            selected = sorted(
                (e for e in self.entries.values() if sync_from < e.seq <= upto),
                key=lambda e: e.seq,
            )
            keyed = [(e.seq, e.person if e.person is not None else e.tombstone) for e in selected]
        total = len(keyed)
        if after is not None:
            keyed = [(k, p) for k, p in keyed if k > after]
        chunk = keyed[:page_size]
        connections = [self._shown(p, fields) for _, p in chunk if p is not None]
        body: dict[str, Any] = {"connections": connections, "totalItems": total}
        if len(keyed) > page_size:
            body["nextPageToken"] = _encode(
                "GgQ",
                {
                    "f": fingerprint,
                    "t": query.get("syncToken", ""),
                    "e": self._page_epoch,
                    "u": upto,
                    "a": chunk[-1][0],
                },
            )
        elif query.get("requestSyncToken", "").lower() == "true":
            body["nextSyncToken"] = _encode(
                "EhQ", {"f": fingerprint, "e": self._sync_epoch, "s": upto}
            )
        if not connections:
            del body["connections"]  # proto3 JSON leaves empty lists out
        return 200, {}, body

    @staticmethod
    def _shown(person: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        if person.get("metadata", {}).get("deleted"):
            return person
        return {k: v for k, v in person.items() if k in ("resourceName", "etag") or k in fields}


def _describe(emulator: GoogleContactsEmulator) -> list[str]:
    expires = datetime.now(UTC) + timedelta(seconds=emulator.access_token_lifetime)
    return [
        f"Google People emulator listening on {emulator.url}",
        f"  AUTOIMPORT_GOOGLE_CONTACTS_URL={emulator.url}",
        f"  AUTOIMPORT_GOOGLE_OAUTH_URL={emulator.url}",
        f"  AUTOIMPORT_GOOGLE_CLIENT_ID={emulator.client_id}",
        f"  AUTOIMPORT_GOOGLE_CLIENT_SECRET={emulator.client_secret}",
        f"  access token:  {emulator.access_token} (until {expires:%H:%M:%S} UTC)",
        f"  refresh token: {emulator.refresh_token}",
    ]


def _build(args: argparse.Namespace) -> GoogleContactsEmulator:
    emulator = GoogleContactsEmulator(access_token_lifetime=args.token_lifetime)
    emulator.add_people(args.contacts)
    return emulator


if __name__ == "__main__":
    main(
        __doc__,
        8083,
        _build,
        _describe,
        lambda parser: parser.add_argument("--token-lifetime", type=float, default=3600.0),
    )

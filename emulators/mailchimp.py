"""An emulator of Mailchimp's Marketing API 3.0 (audience members), served over real HTTP on
loopback.

What it reproduces (the README's Mailchimp section says what of it is verified):
- `GET /3.0/` (the account root: account_id, account_name, login_id, ...);
- `GET /3.0/lists/{list_id}/members`: `count` (default 10, at most 1000), `offset`, `status`,
  `since_last_changed` / `before_last_changed` (ISO 8601, compared in whole seconds; "after" and
  "before" are exclusive here, `inclusive_bounds` makes them inclusive), `sort_field`
  (last_changed, timestamp_opt, timestamp_signup) and `sort_dir` (ASC, DESC), `fields` and
  `exclude_fields` in dot notation, `total_items`; members sharing a sort value come back in
  the order they were created, as one database would;
- `GET /3.0/lists/{list_id}` and `GET /3.0/lists/{list_id}/segments/{id}` (id, name, counts;
  403 for an audience the user's role may not view, `forbidden_lists`);
- `GET /3.0/lists/{list_id}/merge-fields` and `GET /3.0/lists/{id}/segments/{id}/members`
  (offset paging only; unsubscribed, cleaned and transactional members only when asked for);
- `GET /oauth2/metadata` (`Authorization: OAuth <token>`): dc, api_endpoint (this server);
- HTTP Basic with the API key as password (any user name) or `Bearer <OAuth token>`; a wrong
  one gets 401 "API Key Invalid"; an unknown list 404; errors are problem documents
  {type, title, status, detail, instance};
- more than 10 requests in flight for one user get 429 "Too Many Requests".

Tests change members between pages (`change`, `archive`); the base records requests and
gives scripted faults (after authentication and the connection limit, as Mailchimp would); the
most requests of one user held at once is `most_in_flight`.

`python -m emulators.mailchimp --port 8084 --contacts 5000` serves it alone.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any
from urllib.parse import unquote

from emulators.server import Answer, LoopbackEmulator, Request, main

MAX_COUNT = 1000
MAX_IN_FLIGHT = 10
ERRORS_URL = "https://mailchimp.com/developer/marketing/docs/errors/"
SORTABLE = ("last_changed", "timestamp_opt", "timestamp_signup")
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
DEFAULT_MERGE_FIELDS = (
    ("FNAME", "First Name", "text"),
    ("LNAME", "Last Name", "text"),
    ("ADDRESS", "Address", "address"),
    ("PHONE", "Phone Number", "phone"),
    ("BIRTHDAY", "Birthday", "birthday"),
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def mailchimp_time(seconds: int) -> str:
    """Epoch seconds as Mailchimp writes them: 2015-10-21T15:41:36+00:00."""
    return (_EPOCH + timedelta(seconds=seconds)).isoformat()


def subscriber_hash(email: str) -> str:
    """A member's id: the MD5 of the lower-cased email."""
    return hashlib.md5(email.lower().encode()).hexdigest()


def problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {
        "type": ERRORS_URL,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": str(uuid.uuid4()),
    }


class BadRequest(Exception):
    pass


@dataclass
class MailchimpEmulator(LoopbackEmulator):
    api_key: str = "0123456789abcdef0123456789abcdef-us19"
    oauth_token: str = "fedcba9876543210fedcba9876543210"
    account_id: str = "8d3a3db4d97663a9074efcc16"
    list_id: str = "a1b2c3d4e5"
    # Whether since_last_changed / before_last_changed include the second they name.
    inclusive_bounds: bool = False
    # How long before now changes and new members are stamped (past a connector's lag).
    changed_ago: timedelta = timedelta(0)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id
    merge_fields: list[tuple[str, str, str]] = field(
        default_factory=lambda: list(DEFAULT_MERGE_FIELDS)
    )
    segments: dict[str, list[str]] = field(default_factory=dict)  # segment id -> member ids
    # Audiences the user's role may not view: 403 (a constructed body: Mailchimp documents the
    # status, "Forbidden", not the words).
    forbidden_lists: set[str] = field(default_factory=set)
    # The most requests of one user it held at once (`delay` holds each one).
    most_in_flight: int = 0
    _in_flight: dict[str, int] = field(default_factory=dict)
    _too_many: threading.local = field(default_factory=threading.local)
    _created: int = 0  # the order of creation: ties come back in it

    # -- data ------------------------------------------------------------------------------

    def add_members(
        self,
        count: int,
        *,
        changed_at: datetime | None = None,
        ties: int = 1,
        status: str | None = None,
        tags: list[str] | None = None,
    ) -> list[str]:
        """`count` members, `ties` of them sharing each last_changed second from `changed_at`
        on (default: a day ago). Statuses cycle through every status unless one is given."""
        start = _seconds(changed_at or datetime.now(UTC) - timedelta(days=1))
        ids = []
        with self.lock:
            for n in range(count):
                number = len(self.members)
                email = f"member{number:06d}@example.com"
                member_id = subscriber_hash(email)
                self._created += 1
                self.members[member_id] = {
                    "id": member_id,
                    "email_address": email,
                    "unique_email_id": member_id[:10],
                    "contact_id": hashlib.md5(f"c{number}".encode()).hexdigest(),
                    "web_id": 100000 + self._created,
                    "status": status or _status_of(number),
                    "merge_fields": {
                        "FNAME": f"First{number}",
                        "LNAME": f"Last{number}" if number % 7 else "",
                        "ADDRESS": {
                            "addr1": f"{number} Main St",
                            "addr2": "",
                            "city": "Atlanta",
                            "state": "GA",
                            "zip": "30318",
                            "country": "US",
                        }
                        if number % 5 == 0
                        else "",
                        "PHONE": f"+1404555{number % 10000:04d}" if number % 3 == 0 else "",
                        "BIRTHDAY": f"{1 + number % 12:02d}/{1 + number % 28:02d}"
                        if number % 4 == 0
                        else "",
                    },
                    "tags": [
                        {"id": 1000 + i, "name": name}
                        for i, name in enumerate(tags if tags is not None else _tags_of(number))
                    ],
                    "timestamp_signup": mailchimp_time(start - 86400),
                    "timestamp_opt": mailchimp_time(start - 86400),
                    "last_changed": start + n // max(ties, 1),
                    "list_id": self.list_id,
                    "_order": self._created,
                }
                ids.append(member_id)
        return ids

    def change(self, member_id: str, at: datetime | None = None, **merge: str) -> None:
        """Changes a member: its last_changed becomes `at` (default: now)."""
        with self.lock:
            member = self.members[member_id]
            member["merge_fields"].update(merge)
            member["last_changed"] = _seconds(at or datetime.now(UTC) - self.changed_ago)

    def set_status(self, member_id: str, status: str, at: datetime | None = None) -> None:
        with self.lock:
            member = self.members[member_id]
            member["status"] = status
            member["last_changed"] = _seconds(at or datetime.now(UTC) - self.changed_ago)

    def archive(self, member_id: str, at: datetime | None = None) -> None:
        self.set_status(member_id, "archived", at)

    # -- serving ---------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: Message, body: bytes) -> Answer:
        """Counts the user's requests in flight around the base's answer (which holds each one
        `delay` seconds): beyond MAX_IN_FLIGHT, Mailchimp's 429."""
        user = headers.get("Authorization") or "anonymous"
        with self.lock:
            self._in_flight[user] = self._in_flight.get(user, 0) + 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight[user])
            self._too_many.value = self._in_flight[user] > MAX_IN_FLIGHT
        try:
            return super().answer(method, target, headers, body)
        finally:
            with self.lock:
                self._in_flight[user] -= 1

    def faultable(self, request: Request) -> bool:
        """Faults and the contract's counts apply to the reads of members, and to every
        request refused its credentials (the account and merge-field lookups around a read
        are left alone)."""
        refused = not self._authorized(request.headers.get("Authorization") or "")
        return refused or unquote(request.path).endswith("/members")

    def respond(self, request: Request) -> Answer:
        if unquote(request.path) == "/oauth2/metadata":
            return self._metadata(request)
        if not self._authorized(request.headers.get("Authorization") or ""):
            return (
                401,
                {},
                problem(
                    401,
                    "API Key Invalid",
                    "Your API key may be invalid, or you've attempted to access the wrong "
                    "datacenter.",
                ),
            )
        if getattr(self._too_many, "value", False):
            detail = "You have exceeded the limit of 10 simultaneous connections."
            return 429, {}, problem(429, "Too Many Requests", detail)
        fault = self.take_fault(request)
        if fault is not None:
            return fault.answer()
        path = unquote(request.path).rstrip("/")
        query = request.params
        try:
            if path == "/3.0":
                return 200, {}, _trimmed(self._root(), query)
            pieces = path.split("/")
            if len(pieces) >= 4 and pieces[:3] == ["", "3.0", "lists"]:
                if pieces[3] != self.list_id:
                    return self._not_found()
                if pieces[3] in self.forbidden_lists:
                    detail = "You don't have permission to access this resource."
                    return 403, {}, problem(403, "Forbidden", detail)
                rest = pieces[4:]
                if rest == []:
                    return 200, {}, _trimmed(self._list_info(), query)
                if len(rest) == 2 and rest[0] == "segments":
                    if rest[1] not in self.segments:
                        return self._not_found()
                    info = {"id": int(rest[1]), "name": f"Segment {rest[1]}"}
                    info["member_count"] = len(self.segments[rest[1]])
                    return 200, {}, _trimmed(info, query)
                if rest == ["members"]:
                    return 200, {}, _trimmed(self._members(query), query)
                if rest == ["merge-fields"]:
                    return 200, {}, _trimmed(self._merge_fields(query), query)
                if len(rest) == 3 and rest[0] == "segments" and rest[2] == "members":
                    if rest[1] not in self.segments:
                        return self._not_found()
                    return 200, {}, _trimmed(self._segment_members(rest[1], query), query)
        except BadRequest as e:
            return 400, {}, problem(400, "Invalid Resource", str(e))
        return self._not_found()

    def _authorized(self, authorization: str) -> bool:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return credentials == self.oauth_token
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials).decode()
            except ValueError:
                return False
            return decoded.partition(":")[2] == self.api_key
        return False

    @staticmethod
    def _not_found() -> Answer:
        return (
            404,
            {},
            problem(404, "Resource Not Found", "The requested resource could not be found."),
        )

    def _metadata(self, request: Request) -> Answer:
        if request.headers.get("Authorization") != f"OAuth {self.oauth_token}":
            return 401, {}, {"error": "invalid_token", "error_description": "Invalid token"}
        return (
            200,
            {},
            {
                "dc": self.api_key.rpartition("-")[2],
                "role": "owner",
                "accountname": "Emulated Audience Co",
                "user_id": 4242,
                "login": {"login_id": 4242, "login_name": "owner", "email": "owner@example.com"},
                "login_url": "https://login.mailchimp.com",
                "api_endpoint": self.url,
            },
        )

    def _list_info(self) -> dict[str, Any]:
        return {
            "id": self.list_id,
            "name": "Emulated Audience",
            "stats": {"member_count": len(self.members)},
        }

    def _root(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "login_id": "4242",
            "account_name": "Emulated Audience Co",
            "email": "owner@example.com",
            "username": "owner",
            "role": "owner",
            "total_subscribers": sum(
                1 for m in self.members.values() if m["status"] == "subscribed"
            ),
        }

    def _members(self, query: dict[str, list[str]]) -> dict[str, Any]:
        count, offset = _paging(query)
        found = list(self.members.values())
        status = _one(query, "status")
        if status:
            if status not in STATUSES:
                raise BadRequest(f"status must be one of {', '.join(STATUSES)}.")
            found = [m for m in found if m["status"] == status]
        since, before = _one(query, "since_last_changed"), _one(query, "before_last_changed")
        if since:
            at = _parse(since)
            found = [
                m
                for m in found
                if m["last_changed"] > at or (self.inclusive_bounds and m["last_changed"] == at)
            ]
        if before:
            at = _parse(before)
            found = [
                m
                for m in found
                if m["last_changed"] < at or (self.inclusive_bounds and m["last_changed"] == at)
            ]
        sort_field = _one(query, "sort_field")
        if sort_field:
            if sort_field not in SORTABLE:
                raise BadRequest(f"sort_field must be one of {', '.join(SORTABLE)}.")
            descending = _one(query, "sort_dir").upper() == "DESC"
            # Ties keep the order of creation, whichever the direction.
            found.sort(key=lambda m: m["_order"])
            found.sort(key=lambda m: m[sort_field], reverse=descending)
        else:
            found.sort(key=lambda m: m["_order"])
        return {
            "members": [_shown(m) for m in found[offset : offset + count]],
            "list_id": self.list_id,
            "total_items": len(found),
        }

    def _segment_members(self, segment_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        count, offset = _paging(query)
        excluded = {
            s
            for s in ("unsubscribed", "cleaned", "transactional")
            if _one(query, f"include_{s}").lower() != "true"
        } | {"archived"}
        found = [
            self.members[i]
            for i in self.segments[segment_id]
            if i in self.members and self.members[i]["status"] not in excluded
        ]
        return {
            "members": [_shown(m) for m in found[offset : offset + count]],
            "total_items": len(found),
        }

    def _merge_fields(self, query: dict[str, list[str]]) -> dict[str, Any]:
        count, offset = _paging(query)
        fields = [
            {
                "merge_id": n + 1,
                "tag": tag,
                "name": name,
                "type": kind,
                "required": False,
                "default_value": "",
                "public": True,
                "display_order": n + 1,
                "list_id": self.list_id,
            }
            for n, (tag, name, kind) in enumerate(self.merge_fields)
        ]
        return {
            "merge_fields": fields[offset : offset + count],
            "list_id": self.list_id,
            "total_items": len(fields),
        }


def _status_of(number: int) -> str:
    if number % 17 == 3:
        return "unsubscribed"
    if number % 29 == 5:
        return "cleaned"
    if number % 31 == 7:
        return "pending"
    if number % 37 == 11:
        return "transactional"
    if number % 41 == 13:
        return "archived"
    return "subscribed"


def _tags_of(number: int) -> list[str]:
    return [name for k, name in ((2, "Customer"), (3, "VIP"), (5, "Newsletter")) if number % k == 0]


def _seconds(instant: datetime) -> int:
    return int((instant.astimezone(UTC) - _EPOCH).total_seconds())


def _parse(value: str) -> int:
    try:
        return _seconds(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise BadRequest(f"{value!r} is not a valid date and time (use ISO 8601).") from None


def _one(query: dict[str, list[str]], name: str) -> str:
    return query.get(name, [""])[-1]


def _paging(query: dict[str, list[str]]) -> tuple[int, int]:
    try:
        count = int(_one(query, "count") or 10)
        offset = int(_one(query, "offset") or 0)
    except ValueError:
        raise BadRequest("count and offset must be integers.") from None
    if not 1 <= count <= MAX_COUNT:
        raise BadRequest(f"count must be between 1 and {MAX_COUNT}.")
    if offset < 0:
        raise BadRequest("offset must not be negative.")
    return count, offset


def _shown(member: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in member.items() if not k.startswith("_")}
    shown["last_changed"] = mailchimp_time(member["last_changed"])
    shown["tags_count"] = len(member["tags"])
    shown["tags"] = member["tags"][:50]  # Mailchimp returns up to 50 tags a member
    return shown


def _trimmed(answer: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
    """`fields` keeps, `exclude_fields` drops, the named paths (dot notation, into lists)."""
    wanted = [f for f in ",".join(query.get("fields", [])).split(",") if f]
    unwanted = [f for f in ",".join(query.get("exclude_fields", [])).split(",") if f]
    if wanted:
        answer = _keep(answer, [w.split(".") for w in wanted])
    for path in unwanted:
        _drop(answer, path.split("."))
    return answer


def _keep(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_keep(item, paths) for item in value]
    if not isinstance(value, dict):
        return value
    kept: dict[str, Any] = {}
    for name in dict.fromkeys(p[0] for p in paths):
        if name not in value:
            continue
        deeper = [p[1:] for p in paths if p[0] == name]
        kept[name] = value[name] if any(not d for d in deeper) else _keep(value[name], deeper)
    return kept


def _drop(value: Any, path: list[str]) -> None:
    if isinstance(value, list):
        for item in value:
            _drop(item, path)
    elif isinstance(value, dict) and path[0] in value:
        if len(path) == 1:
            del value[path[0]]
        else:
            _drop(value[path[0]], path[1:])


def _build(args: argparse.Namespace) -> MailchimpEmulator:
    emulator = MailchimpEmulator()
    emulator.add_members(args.contacts, ties=args.ties)
    return emulator


def _describe(emulator: MailchimpEmulator) -> list[str]:
    return [
        f"Mailchimp emulator listening on {emulator.url}",
        f"API key: {emulator.api_key}  OAuth token: {emulator.oauth_token}",
        f"account id: {emulator.account_id}  audience (list) id: {emulator.list_id}",
    ]


if __name__ == "__main__":
    main(
        __doc__ or "",
        8084,
        _build,
        _describe,
        lambda parser: parser.add_argument("--ties", type=int, default=20),
    )

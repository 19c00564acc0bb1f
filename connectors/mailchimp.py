"""Mailchimp (Marketing API 3.0): the members of one audience (list).

Where: the data centre is the API key's suffix (`<hex>-us19` is `https://us19.api.mailchimp.com`,
sent as HTTP Basic with the key as password); an OAuth token has no suffix, so its data centre
comes from `GET https://login.mailchimp.com/oauth2/metadata` (`Authorization: OAuth <token>`,
answering `dc` and `api_endpoint`), and the API is then called with `Authorization: Bearer`.
`base_url` (AUTOIMPORT_MAILCHIMP_URL) replaces both, for an emulator or a proxy.

Reading: `GET /3.0/lists/{list_id}/members`, sorted by `last_changed` ascending, 1,000 a page,
from `since_last_changed`, with `fields=` trimming each member to what is imported. Mailchimp's
own paging is an offset, and an offset read loses members: a member read earlier that changes
during the read moves to the end (its `last_changed` is now), every later member moves up one
place, and the one that moves onto the offset already read is never returned. So the cursor is a
keyset on `last_changed` (whole seconds), JSON with sorted keys:

- `since` (epoch seconds): every matching member changed before `since` has been read;
- `seen`: the ids (MD5 of the lower-cased email) changed exactly at `since` already read.

Each request asks from offset 0 for members changed since `since` minus one second (Mailchimp
says "after the set timeframe": whether that is inclusive is not documented, and asking one
second earlier is right either way); members before `since`, and the `seen` ones at it, are
dropped. A page that starts at offset 0 cannot be shifted by a change.

A tie larger than a page (a bulk import stamps thousands of members with one second) cannot be
read that way: the members endpoint cannot filter or sort by id. Once more than TIE_LIMIT
members share the cursor's second, the read sweeps that second by offset instead, guarded
against shifts: the cursor holds `offset` (where the next unread member is, in Mailchimp's
order of the query, as counted when it was read) and `anchor` (the ids of the last ANCHOR
members read at that second, in order). Each sweep request starts ANCHOR places before
`offset` and resumes after the latest anchor member it finds still at that second: a past
second only loses members (a changed one moves to now), so fewer than ANCHOR members leaving
between two requests never hide one. Should every anchor member be gone, the sweep reads the
second again from its first member: some members come twice in that pass, none is lost.

Each contact carries its position, the keyset right after it; a page read again from the same
cursor gives the same contacts again. A read with a status criteria sends `status=`; a tag
criteria keeps the members whose `tags` (Mailchimp returns up to 50 a member) name it. A segment
criteria reads `GET /3.0/lists/{list_id}/segments/{segment_id}/members`, which has neither
`since_last_changed` nor a sort: every chain reads the whole segment, by offset with the same
anchor guard (a member joining the segment behind the read comes in the next pass).

Statuses: `subscribed` adds; `unsubscribed` and `cleaned` add unsubscribed (opted out, never
reactivated); `pending` (unconfirmed double opt-in) and `transactional` are skipped with their
reason; `archived` is a deletion at the source (counted; the contact stays). Merge fields FNAME,
LNAME and PHONE are the standard fields; the audience's other merge fields (`GET
/3.0/lists/{id}/merge-fields`) and the member's tags become custom fields "Mailchimp <name>" and
"Mailchimp Tags".

Mailchimp allows 10 simultaneous connections per user: the connectors of one account in this
process share one limiter of MAX_CONNECTIONS requests in flight, and a 429 is retried with
backoff (Mailchimp sends no Retry-After).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
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
    ReauthRequired,
    RetryableError,
    Setting,
    Source,
    credentials_rejected,
    text_of,
)
from domain.errors import Violations
from domain.sources import Criteria, field_title, personalization_tag
from domain.sync import ContactPage, DeclaredField, ExternalContact

log = logging.getLogger(__name__)

DISPLAY_NAME = "Mailchimp"
# Empty: the data centre of the key (or, for an OAuth token, of its metadata).
DEFAULT_URL = ""
DEFAULT_OAUTH_URL = "https://login.mailchimp.com"
API_ROOT = "/3.0/"
PAGE_SIZE = 1000  # the members endpoint's maximum `count`
# More members than this sharing the cursor's second are swept by offset (see the docstring).
TIE_LIMIT = 100
# How many of the last members read at a second the sweep's cursor keeps to find its place.
ANCHOR = 50
MAX_CONNECTIONS = 10  # Mailchimp's simultaneous connections per user
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
STANDARD_MERGE_FIELDS = frozenset({"FNAME", "LNAME", "PHONE"})
MEMBER_FIELDS = ("id", "email_address", "status", "merge_fields", "tags", "last_changed")
SKIP_REASONS = {
    "pending": "Mailchimp: the person has not confirmed the subscription (double opt-in)",
    "transactional": "Mailchimp: a transactional contact, who never subscribed to marketing",
}
TAGS_KEY = "tags"

_API_KEY = re.compile(r"[0-9a-f]{32}-([a-z]{2,4}[0-9]{1,3})")
_DATA_CENTRE = re.compile(r"[a-z]{2,4}[0-9]{1,3}")
_LIST_ID = re.compile(r"[0-9a-zA-Z]{1,32}")
_SEGMENT_ID = re.compile(r"[0-9]{1,20}")
_ACCOUNT_ID = re.compile(r"[0-9a-z]{1,64}")
_SECOND = timedelta(seconds=1)


# -- criteria and external account ---------------------------------------------------------


@dataclass(frozen=True)
class MailchimpCriteria(Criteria):
    service = "mailchimp"
    audience_id: str = field(
        default="", metadata={"help": "the audience (list) id to import: required"}
    )
    member_status: str = field(
        default="", metadata={"help": f"only members of this status ({', '.join(STATUSES)})"}
    )
    member_tag: str = field(default="", metadata={"help": "only members with this tag"})
    segment_id: str = field(default="", metadata={"help": "only members of this segment"})

    def validate(self, violations: Violations, field: str) -> None:
        if not _LIST_ID.fullmatch(self.audience_id):
            violations.add(
                f"{field}.audience_id",
                "is required: the audience (list) id, letters and digits",
            )
        narrowed = [
            name for name in ("member_status", "member_tag", "segment_id") if getattr(self, name)
        ]
        if len(narrowed) > 1:
            violations.add(
                f"{field}.{narrowed[1]}",
                "set at most one of member_status, member_tag and segment_id",
            )
        if self.member_status and self.member_status not in STATUSES:
            violations.add(
                f"{field}.member_status", f"must be one of {', '.join(STATUSES)}, or empty"
            )
        tag = self.member_tag
        if tag != tag.strip() or len(tag) > 100:
            violations.add(
                f"{field}.member_tag",
                "must be one tag's name: no surrounding spaces, at most 100 characters",
            )
        if self.segment_id and not _SEGMENT_ID.fullmatch(self.segment_id):
            violations.add(f"{field}.segment_id", "must be a segment id (digits), or empty")


def normalize_account(value: str) -> str:
    """The Mailchimp account's `account_id`, as `GET /3.0/` answers it (lower case)."""
    account = value.strip().lower()
    if not _ACCOUNT_ID.fullmatch(account):
        raise ValueError(
            "must be the Mailchimp account id (account_id of GET /3.0/; `autoimport imports "
            "check` shows it): letters and digits"
        )
    return account


def external_account_identity(value: str) -> str:
    return value.strip().lower()


def data_centre_of(api_key: str) -> str | None:
    """`us19` for `<32 hex>-us19`; None for a secret without a suffix (an OAuth token)."""
    match = _API_KEY.fullmatch(api_key.strip())
    return match.group(1) if match else None


def api_url_of(data_centre: str) -> str:
    return f"https://{data_centre}.api.mailchimp.com"


# -- the limit on simultaneous connections ---------------------------------------------------

_LIMITERS: dict[str, threading.BoundedSemaphore] = {}
_LIMITERS_LOCK = threading.Lock()


def _limiter_of(user: str) -> threading.BoundedSemaphore:
    with _LIMITERS_LOCK:
        return _LIMITERS.setdefault(user, threading.BoundedSemaphore(MAX_CONNECTIONS))


# -- the keyset --------------------------------------------------------------------------


@dataclass
class _Keyset:
    since: int = 0
    seen: list[str] = field(default_factory=list)
    # A sweep of the second `since` (see the docstring); None outside one.
    offset: int | None = None
    anchor: list[str] = field(default_factory=list)
    done: bool = False

    def encode(self) -> str:
        state: dict[str, Any] = {"since": self.since, "seen": self.seen, "done": self.done}
        if self.offset is not None:
            state.update(offset=self.offset, anchor=self.anchor)
        return json.dumps(state, sort_keys=True)

    @classmethod
    def decode(cls, cursor: str) -> _Keyset:
        if not cursor:
            return cls()
        unreadable = PermanentError(
            "the saved Mailchimp position is unreadable: recreate the import"
        )
        try:
            state = json.loads(cursor)
            keyset = cls(
                since=state["since"],
                seen=state.get("seen", []),
                offset=state.get("offset"),
                anchor=state.get("anchor", []),
                done=state.get("done", False),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise unreadable from None
        if not (
            _is_int(keyset.since)
            and (keyset.offset is None or _is_int(keyset.offset))
            and all(isinstance(i, str) for i in [*keyset.seen, *keyset.anchor])
            and isinstance(keyset.done, bool)
        ):
            raise unreadable
        return keyset


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Member:
    raw: dict[str, Any]
    id: str
    changed: int  # last_changed, epoch seconds


# -- the connector -------------------------------------------------------------------------


class MailchimpConnector:
    """Reads one Mailchimp audience's members with an API key or an OAuth token."""

    # last_changed has whole seconds: a bound a minute back keeps a member changed in the
    # bound's own second (after the read passed it) out of a read that has already ended.
    lag = timedelta(minutes=1)

    def __init__(
        self,
        secret: str,
        *,
        base_url: str = DEFAULT_URL,
        oauth_url: str = DEFAULT_OAUTH_URL,
        external_account: str = "",
        timeout: float = 30.0,
    ):
        """`secret`: an API key (`<hex>-<dc>`) or an OAuth access token. `external_account`:
        the Mailchimp account id the import names; the credentials must belong to it."""
        self._secret = secret.strip()
        self._base_url = base_url.strip().rstrip("/")
        self._oauth_url = oauth_url.strip().rstrip("/") or DEFAULT_OAUTH_URL
        self._external_account = external_account_identity(external_account)
        self._timeout = timeout
        self._data_centre = data_centre_of(self._secret)
        user = self._external_account or hashlib.sha256(self._secret.encode()).hexdigest()
        self._limiter = _limiter_of(user)
        self._client: httpx.Client | None = None
        self._fields: dict[str, tuple[DeclaredField, ...]] = {}  # by list id
        self._merge_keys: dict[str, dict[str, str]] = {}  # list id -> merge tag -> field key

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # -- reading ----------------------------------------------------------------------------

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
        with http.deadline(deadline):  # each request ends by it, or fails
            return self._fetch_page(criteria, cursor, until)

    def _fetch_page(self, criteria: Criteria, cursor: str, until: datetime) -> ContactPage:
        if not isinstance(criteria, MailchimpCriteria) or not criteria.audience_id:
            raise PermanentError("a Mailchimp import needs an audience (list id) in its criteria")
        declared = self._declared_fields(criteria.audience_id)
        if criteria.segment_id:
            return self._segment_page(criteria, cursor, declared)
        until_s = _epoch(until)
        state = _Keyset.decode(cursor)
        state.done = False  # a new chain carries on from where the last one ended
        if state.since > until_s:
            state.done = True
            return ContactPage([], state.encode(), has_more=False, declared_fields=declared)
        sweeping = state.offset is not None
        request_offset = max(0, (state.offset or 0) - ANCHOR) if sweeping else 0
        members, full = self._members(criteria, state.since, until_s, request_offset)
        start = self._start_of(members, state, sweeping)
        if start is None and full and members[-1].changed < state.since:
            # The page ends before the second swept (members one second early, which an
            # inclusive `since_last_changed` returns, counted low): read on.
            read_on = replace(state, offset=request_offset + len(members) + ANCHOR)
            return ContactPage([], read_on.encode(), has_more=True, declared_fields=declared)
        if start is None:  # every anchor member changed meanwhile: read the second again
            log.info("Mailchimp sweep of %d lost its place: reading that second again", state.since)
            state.offset, state.anchor, sweeping, request_offset = 0, [], True, 0
            members, full = self._members(criteria, state.since, until_s, 0)
            start = 0
        return self._page_from(
            criteria, members, full, start, state, sweeping, request_offset, until_s, declared
        )

    def _start_of(self, members: list[_Member], state: _Keyset, sweeping: bool) -> int | None:
        """Where the unread members begin in `members`; None when a sweep lost its place."""
        if not sweeping or not state.anchor:
            return 0
        anchor = set(state.anchor)
        found = [i for i, m in enumerate(members) if m.changed == state.since and m.id in anchor]
        return found[-1] + 1 if found else None

    def _page_from(
        self,
        criteria: MailchimpCriteria,
        members: list[_Member],
        full: bool,
        start: int,
        state: _Keyset,
        sweeping: bool,
        request_offset: int,
        until_s: int,
        declared: tuple[DeclaredField, ...],
    ) -> ContactPage:
        # The members read at the current second, in Mailchimp's order: `seen` (or the sweep's
        # anchor) when the page starts at the cursor's second.
        at, read_at = state.since, list(state.anchor if sweeping else state.seen)
        seen = set(state.seen) if not sweeping else set()
        cursor = state
        contacts = []
        reached_bound = False
        for index in range(start, len(members)):
            member = members[index]
            if member.changed < state.since or (
                member.changed == state.since and member.id in seen
            ):
                continue  # read before, or one second early (asked for, to be sure of ties)
            if member.changed > until_s:
                reached_bound = True
                break
            if member.changed != at:
                at, read_at, sweeping = member.changed, [], False
            read_at.append(member.id)
            if sweeping or len(read_at) > TIE_LIMIT:
                sweeping = True
                # Where the next unread member is in this second's query: exact for the second
                # asked for; for a later one, a lower bound (the anchor finds the place).
                offset = request_offset + index + 1 if at == state.since else len(read_at)
                cursor = _Keyset(since=at, offset=offset, anchor=read_at[-ANCHOR:])
            else:
                cursor = _Keyset(since=at, seen=list(read_at))
            if _matches(criteria, member):
                contacts.append(self._contact_of(criteria.audience_id, member, cursor.encode()))
        more = full and not reached_bound
        if more and cursor is state:
            cursor = self._past(members, state, request_offset)
        if not more:
            cursor = replace(cursor, done=True)
        return ContactPage(contacts, cursor.encode(), has_more=more, declared_fields=declared)

    @staticmethod
    def _past(members: list[_Member], state: _Keyset, request_offset: int) -> _Keyset:
        """A full page with nothing new in it: the second `since` holds more than a page
        (members one second early included). The sweep goes on from the end of the page, and
        of the `seen` members past it."""
        if state.offset is not None:  # a sweep: its anchor was at the page's end
            return replace(state, offset=request_offset + len(members))
        in_page = {m.id for m in members}
        beyond = [i for i in state.seen if i not in in_page]
        return _Keyset(
            since=state.since, offset=len(members) + len(beyond), anchor=state.seen[-ANCHOR:]
        )

    def _segment_page(
        self, criteria: MailchimpCriteria, cursor: str, declared: tuple[DeclaredField, ...]
    ) -> ContactPage:
        """A pass over the whole segment, by offset, found again by its anchor."""
        state = _Keyset.decode(cursor)
        if state.done or state.offset is None:  # a new pass
            state = _Keyset(offset=0)
        request_offset = max(0, (state.offset or 0) - ANCHOR)
        members, full = self._segment_members(criteria, request_offset)
        start = 0
        if state.anchor:
            anchor = set(state.anchor)
            found = [i for i, m in enumerate(members) if m.id in anchor]
            if found:
                start = found[-1] + 1
            else:  # every anchor member left the segment meanwhile: read it again
                log.info("Mailchimp segment read lost its place: reading it again")
                request_offset, state = 0, _Keyset(offset=0)
                members, full = self._segment_members(criteria, 0)
        read = list(state.anchor)
        contacts = []
        position = state
        for index in range(start, len(members)):
            read.append(members[index].id)
            position = _Keyset(offset=request_offset + index + 1, anchor=read[-ANCHOR:])
            contacts.append(
                self._contact_of(criteria.audience_id, members[index], position.encode())
            )
        if full and position is state:  # nothing new in a full page: on from its end
            ids = [m.id for m in members]
            position = _Keyset(offset=request_offset + len(members), anchor=ids[-ANCHOR:])
        if not full:
            position = replace(position, done=True)
        return ContactPage(contacts, position.encode(), has_more=full, declared_fields=declared)

    # -- what a member becomes ----------------------------------------------------------------

    def _contact_of(self, list_id: str, member: _Member, position: str) -> ExternalContact:
        raw = member.raw
        status = text_of(raw.get("status"))
        merge = raw.get("merge_fields") or {}
        keys = self._merge_keys.get(list_id, {})
        fields = {
            keys[tag]: _merge_text(value)
            for tag, value in merge.items()
            if tag in keys and _merge_text(value)
        }
        tags = ", ".join(text_of(t.get("name")) for t in raw.get("tags") or [] if t.get("name"))
        if tags:
            fields[TAGS_KEY] = tags
        return ExternalContact(
            external_id=member.id,
            email=text_of(raw.get("email_address")),
            first_name=_merge_text(merge.get("FNAME")),
            last_name=_merge_text(merge.get("LNAME")),
            phone=_merge_text(merge.get("PHONE")),
            opted_out=status in ("unsubscribed", "cleaned"),
            fields=fields,
            position=position,
            deleted=status == "archived",
            skip_reason=SKIP_REASONS.get(status, ""),
        )

    def _declared_fields(self, list_id: str) -> tuple[DeclaredField, ...]:
        """The audience's merge fields (but the standard ones) and the tags, as fields of the
        account; read once per connector."""
        if list_id not in self._fields:
            self._check_account()
            response = self._get(
                f"/3.0/lists/{list_id}/merge-fields",
                {"count": PAGE_SIZE, "fields": "merge_fields.tag,merge_fields.name"},
                list_id=list_id,
            )
            try:
                merge_fields = [
                    (text_of(f["tag"]), text_of(f.get("name")) or text_of(f["tag"]))
                    for f in response.json()["merge_fields"]
                ]
            except (ValueError, KeyError, TypeError):
                raise RetryableError("Mailchimp sent unreadable merge fields") from None
            keys = {}
            declared = []
            for tag, name in merge_fields:
                if tag in STANDARD_MERGE_FIELDS:
                    continue
                keys[tag] = f"merge:{tag}"
                declared.append(
                    DeclaredField(
                        keys[tag],
                        field_title(DISPLAY_NAME, name),
                        personalization_tag(DISPLAY_NAME, name),
                    )
                )
            declared += SOURCE.declared_fields().values()
            self._merge_keys[list_id] = keys
            self._fields[list_id] = tuple(declared)
        return self._fields[list_id]

    # -- checking ---------------------------------------------------------------------------

    def check_connection(
        self, criteria: Criteria, external_account: str, *, deadline: float | None = None
    ) -> list[Finding]:
        """The account root (the credentials work, and whose account they reach), then the
        audience (and segment) the criteria name: Mailchimp has no scopes, but a user's role
        may keep an audience from them."""
        try:
            with http.deadline(deadline):  # each request ends by it, or fails
                return self._check(criteria, external_account)
        except AuthError as e:  # on any of its requests (an OAuth token's metadata too)
            return credentials_rejected(str(e))

    def _check(self, criteria: Criteria, external_account: str) -> list[Finding]:
        root = self._get(API_ROOT, {"fields": "account_id,account_name"}).json()
        account = external_account_identity(text_of(root.get("account_id")))
        name = text_of(root.get("account_name"))
        wanted = external_account_identity(external_account)
        findings = [
            Finding("credentials", True, f"Mailchimp accepted the credentials of {name!r}"),
            Finding(
                "external account",
                account == wanted,
                f"the credentials reach Mailchimp account {account}"
                if account == wanted
                else f"the credentials reach Mailchimp account {account} ({name}), not "
                f"{wanted}: use that account's API key, or import from {account}",
            ),
        ]
        findings.append(self._audience_finding(criteria))
        findings.append(
            Finding(
                "quota",
                True,
                f"Mailchimp sets no quota of calls, only {MAX_CONNECTIONS} simultaneous "
                "connections per user, which the connector keeps to",
            )
        )
        return findings

    def _audience_finding(self, criteria: Criteria) -> Finding:
        if not isinstance(criteria, MailchimpCriteria) or not criteria.audience_id:
            return Finding("scopes", False, "the criteria name no audience (audience_id)")
        paths = [(f"/3.0/lists/{criteria.audience_id}", "audience")]
        if criteria.segment_id:
            path = f"/3.0/lists/{criteria.audience_id}/segments/{criteria.segment_id}"
            paths.append((path, "segment"))
        found = []
        for path, what in paths:
            response = self._get(path, {"fields": "id,name"}, accept={403, 404})
            if response.status_code == 403:
                return Finding(
                    "scopes",
                    False,
                    f"the credentials may not read the {what} ({_detail(response)}): use the "
                    "API key of a user whose role may view audiences",
                )
            if response.status_code == 404:
                return Finding(
                    "scopes",
                    False,
                    f"the account has no {what} {path.rsplit('/', 1)[1]!r}: fix the criteria",
                )
            found.append(f"{what} {text_of(response.json().get('name'))!r}")
        return Finding(
            "scopes",
            True,
            f"Mailchimp keys carry no scopes; the credentials may read the {' and '.join(found)}",
        )

    # -- HTTP -------------------------------------------------------------------------------

    def _members(
        self, criteria: MailchimpCriteria, since: int, until_s: int, offset: int
    ) -> tuple[list[_Member], bool]:
        params: dict[str, Any] = {
            "count": PAGE_SIZE,
            "offset": offset,
            "sort_field": "last_changed",
            "sort_dir": "ASC",
            "fields": ",".join(["total_items", *(f"members.{f}" for f in MEMBER_FIELDS)]),
            "before_last_changed": _iso(until_s + 1),
        }
        if since > 0:
            params["since_last_changed"] = _iso(since - 1)
        if criteria.member_status:
            params["status"] = criteria.member_status
        response = self._get(
            f"/3.0/lists/{criteria.audience_id}/members", params, criteria.audience_id
        )
        return _read_members(response)

    def _segment_members(
        self, criteria: MailchimpCriteria, offset: int
    ) -> tuple[list[_Member], bool]:
        params = {
            "count": PAGE_SIZE,
            "offset": offset,
            "fields": ",".join(["total_items", *(f"members.{f}" for f in MEMBER_FIELDS)]),
            "include_cleaned": "true",
            "include_transactional": "true",
            "include_unsubscribed": "true",
        }
        path = f"/3.0/lists/{criteria.audience_id}/segments/{criteria.segment_id}/members"
        return _read_members(self._get(path, params, criteria.audience_id))

    def _check_account(self) -> None:
        """The credentials must read the account the import names (its budget is that one's)."""
        if not self._external_account:
            return
        response = self._get(API_ROOT, {"fields": "account_id"})
        try:
            account = external_account_identity(text_of(response.json()["account_id"]))
        except (ValueError, KeyError, TypeError):
            raise RetryableError("Mailchimp sent an unreadable account") from None
        if account != self._external_account:
            raise PermanentError(
                f"these Mailchimp credentials belong to account {account}, not to "
                f"{self._external_account}: reconnect the import with the right account"
            )

    def _get(
        self,
        path: str,
        params: dict[str, Any],
        list_id: str = "",
        *,
        accept: frozenset[int] | set[int] = frozenset(),
    ) -> httpx.Response:
        """A GET; an error raises, but for the statuses in `accept`, returned to read."""
        client = self._http()
        with self._slot():
            response = http.send(
                client,
                "GET",
                path,
                service=DISPLAY_NAME,
                params=params,
                accept=_READ_HERE | accept,
            )
        if response.status_code >= 400 and response.status_code not in accept:
            _raise_for(response, list_id)
        return response

    @contextmanager
    def _slot(self) -> Iterator[None]:
        """One of the user's MAX_CONNECTIONS simultaneous requests, waited for."""
        with self._limiter:
            yield

    def _http(self) -> httpx.Client:
        if self._client is None:
            if self._data_centre is not None:  # an API key: HTTP Basic, any user name
                auth = f"Basic {_basic(self._secret)}"
                url = self._base_url or api_url_of(self._data_centre)
            else:  # an OAuth token
                auth = f"Bearer {self._secret}"
                url = self._base_url or self._oauth_endpoint()
            self._client = http.new_client(url, {"Authorization": auth}, self._timeout)
        return self._client

    def _oauth_endpoint(self) -> str:
        """An OAuth token's API endpoint, from its metadata."""
        with (
            http.new_client(
                self._oauth_url, {"Authorization": f"OAuth {self._secret}"}, self._timeout
            ) as client,
            self._slot(),
        ):
            response = http.send(
                client, "GET", "/oauth2/metadata", service=DISPLAY_NAME, accept=_READ_HERE
            )
        if response.status_code >= 400:
            _raise_for(response)
        try:
            body = response.json()
            endpoint = text_of(body.get("api_endpoint")).rstrip("/")
            dc = text_of(body.get("dc"))
        except (ValueError, AttributeError):
            raise RetryableError("Mailchimp sent unreadable OAuth metadata") from None
        # The token goes only to Mailchimp's own hosts, unless the metadata server is one the
        # operator named (an emulator).
        trusted = self._oauth_url != DEFAULT_OAUTH_URL or (
            endpoint.startswith("https://") and endpoint.endswith(".api.mailchimp.com")
        )
        if endpoint and trusted:
            return endpoint
        if _DATA_CENTRE.fullmatch(dc):
            return api_url_of(dc)
        raise RetryableError("Mailchimp's OAuth metadata names no data centre")


# Client errors read here, for Mailchimp's own `detail`; 403 stays with http.send, 429 is
# retried there.
_READ_HERE = frozenset(range(400, 500)) - {403, 429}


def _raise_for(response: httpx.Response, list_id: str = "") -> None:
    status = response.status_code
    detail = _detail(response)
    log.warning("Mailchimp %s answered HTTP %d", response.request.url.path, status)
    if status == 401:
        # Keys and tokens never expire: a refused one was deleted or revoked.
        raise ReauthRequired(
            f"Mailchimp rejected the credentials ({detail}): reconnect the Mailchimp account"
        )
    if status == 404 and list_id:
        raise PermanentError(
            f"Mailchimp has no audience (or segment) {list_id!r} in this account: fix the "
            "import's criteria"
        )
    raise PermanentError(f"Mailchimp refused the request (HTTP {status}): {detail}")


def _detail(response: httpx.Response) -> str:
    """Mailchimp's problem document (RFC 7807): its title and detail."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:300]
    parts = [text_of(body.get("title")), text_of(body.get("detail"))]
    errors = body.get("errors")
    if isinstance(errors, list):
        parts += [f"{e.get('field')}: {e.get('message')}" for e in errors if isinstance(e, dict)]
    return "; ".join(p for p in parts if p)[:300]


def _read_members(response: httpx.Response) -> tuple[list[_Member], bool]:
    """The members of a page, and whether the page was full (more may follow)."""
    try:
        raw = response.json()["members"]
        members = [
            _Member(raw=m, id=text_of(m["id"]), changed=_parse(text_of(m.get("last_changed"))))
            for m in raw
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RetryableError("Mailchimp sent an unreadable page of members") from None
    return members, len(members) >= PAGE_SIZE


def _matches(criteria: MailchimpCriteria, member: _Member) -> bool:
    if not criteria.member_tag:
        return True
    wanted = criteria.member_tag.casefold()
    return any(text_of(t.get("name")).casefold() == wanted for t in member.raw.get("tags") or [])


def _merge_text(value: Any) -> str:
    """A merge field's value as text; an address is one line."""
    if isinstance(value, dict):  # ADDRESS: addr1, addr2, city, state, zip, country
        parts = ("addr1", "addr2", "city", "state", "zip", "country")
        return ", ".join(
            text_of(value.get(p)).strip() for p in parts if text_of(value.get(p)).strip()
        )
    return text_of(value).strip()


def _basic(secret: str) -> str:
    return base64.b64encode(f"anystring:{secret}".encode()).decode()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch(instant: datetime) -> int:
    return (instant.astimezone(UTC) - _EPOCH) // _SECOND


def _iso(seconds: int) -> str:
    """Epoch seconds as Mailchimp writes times: 2015-10-21T15:41:36+00:00."""
    return (_EPOCH + timedelta(seconds=seconds)).isoformat()


def _parse(value: str) -> int:
    if not value:
        return 0
    try:
        return _epoch(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise RetryableError(f"Mailchimp sent an unreadable last_changed {value!r}") from None


def _connect(target: ImportTarget, settings: Mapping[str, str]) -> MailchimpConnector:
    return MailchimpConnector(
        target.credentials.access_token,
        base_url=settings["url"],
        oauth_url=settings["oauth_url"],
        external_account=target.external_account,
    )


SOURCE = Source(
    id="mailchimp",
    display_name=DISPLAY_NAME,
    description="the members of a Mailchimp audience (Marketing API 3.0), with an API key or an "
    "OAuth token",
    criteria_type=MailchimpCriteria,
    criteria_description=(
        "the members of one audience (audience_id), optionally only one status, one tag or "
        "one segment"
    ),
    fields=(FieldSpec(TAGS_KEY, "Tags"),),
    normalize_account=normalize_account,
    account_identity=external_account_identity,
    external_account_help="the Mailchimp account id (imports check shows it)",
    connect=_connect,
    settings=(
        Setting(
            "url",
            "AUTOIMPORT_MAILCHIMP_URL",
            DEFAULT_URL,
            "Marketing API base URL",
            url=True,
            when_empty="each API key's data centre, https://<dc>.api.mailchimp.com",
        ),
        Setting(
            "oauth_url",
            "AUTOIMPORT_MAILCHIMP_OAUTH_URL",
            DEFAULT_OAUTH_URL,
            "OAuth metadata (an OAuth token's data centre)",
            url=True,
        ),
    ),
)

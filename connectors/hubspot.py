"""HubSpot (CRM v3 contacts search).

Reading: `POST /crm/v3/objects/contacts/search`, filtered on `lastmodifieddate` (epoch-ms
strings) up to the sync's bound, sorted by it, 200 a page; a lifecycle stage criteria is one
more filter. Search's own paging (`after`, an offset into the result list) is never followed
across pages: when a contact already read is modified while a chain reads, it leaves the
filtered window, every later result moves up one place, and the one that moves onto the last
offset read is skipped; the next sync starts after it, so it is lost until it changes again.
Offsets also stop at 10,000 results (a 400). So every request sends `"after": "0"` and the
cursor is a keyset, JSON with sorted keys:

- `since` (epoch ms): every matching contact modified before `since` has been read;
- `seen`: the ids modified exactly at `since` already read in this chain (dropped when met
  again, since the next request starts at `since` inclusive: GTE, never GT, which would lose
  the rest of a tie);
- `tie_after`: set while sweeping the contacts that share the millisecond `since` in
  `hs_object_id` order (more than a page of them: HubSpot stamps its batch updates with one
  timestamp); every id up to it is done;
- `done`: the chain reached the sync's bound. The next chain starts LOOKBACK before `since`.

Each contact carries its position: the keyset right after it (its own millisecond as `since`,
with `seen` holding the ids read at that millisecond up to it; in a tie sweep, its id as
`tie_after`). A sync stopped by a cap resumes there: the contacts after it, those sharing its
millisecond included, come exactly once, and none before it comes again unless it changed (its
new `lastmodifieddate` puts it after the cut). A page read again from the same cursor gives the
same contacts again (GTE, never GT).

Two allowances for search's index lag, which can keep a change out of the results for a while:
`lag` (one minute) is how far behind the present a sync's bound is set, so that what a sync
asks for has almost always been indexed; LOOKBACK (ten minutes) makes every new chain re-read
the last minutes before where the previous chain ended, catching a straggler that was indexed
late with a timestamp the previous chain had already passed.

Search allows 5 requests a second per account: the connectors of one account (portal) in this
process share one pacer that spaces their searches to at most SEARCHES_PER_SECOND. A 429 names
its policy: SECONDLY and TEN_SECONDLY_ROLLING are waited for and retried; DAILY ends the sync
(nothing works before midnight in the account's time zone).
HTTP 477 (the account is being migrated) is retried like a 5xx.
Archived (deleted) contacts never appear in search: they stay in the account.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import deque
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

DEFAULT_URL = "https://api.hubapi.com"
SEARCH_PATH = "/crm/v3/objects/contacts/search"
DETAILS_PATH = "/account-info/v3/details"
CONTACTS_SCOPE = "crm.objects.contacts.read"
DAILY = "X-HubSpot-RateLimit-Daily"
DAILY_REMAINING = "X-HubSpot-RateLimit-Daily-Remaining"
PAGE_SIZE = 200  # search's maximum
PROPERTIES = (
    "email",
    "firstname",
    "lastname",
    "phone",
    "company",
    "jobtitle",
    "lifecyclestage",
    "hs_email_optout",
    "lastmodifieddate",
    "hs_object_id",
)
MODIFIED = "lastmodifieddate"
OBJECT_ID = "hs_object_id"
# Each new chain re-reads this much before where the previous one ended (see the docstring).
LOOKBACK = timedelta(minutes=10)
# Search allows 5 a second per account; one less, and counted over a longer window, leave
# room for network jitter (requests sent a window apart may arrive closer together).
SEARCHES_PER_SECOND = 4.0
PACING_WINDOW = 1.25  # seconds
# Waits after a 429 without Retry-After, by policy: a second for SECONDLY; for the rolling
# ten-second window, long enough for the whole window to roll.
SECONDLY_WAIT = 1.0
TEN_SECONDLY_WAIT = 10.0
MIGRATING = 477  # HubSpot's "account being migrated": try again later
DAILY_LIMIT_MESSAGE = (
    "HubSpot's daily API limit for this account is reached: syncs resume after midnight in the "
    "HubSpot account's time zone"
)
RATE_LIMITED_MESSAGE = "HubSpot is rate limiting this account: the next sync tries again"
MIGRATING_MESSAGE = "HubSpot is migrating this account (HTTP 477): the next sync tries again"
# Client errors read here, for HubSpot's own `message`; 401 and 403 stay with http.send.
_READ_HERE = frozenset(range(400, 500)) - {401, 403}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(instant: datetime) -> int:
    """An instant as epoch milliseconds (floor), HubSpot's datetime filter unit."""
    return (instant.astimezone(UTC) - _EPOCH) // _MS


def parse_ms(value: str) -> int:
    """HubSpot's "2025-03-01T12:00:00.000Z" as epoch milliseconds."""
    return epoch_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))


def to_contact(result: dict[str, Any], position: str | None = None) -> ExternalContact:
    properties = result.get("properties") or {}
    fields = {
        "company": text_of(properties.get("company")).strip(),
        "job_title": text_of(properties.get("jobtitle")).strip(),
        "lifecycle_stage": text_of(properties.get("lifecyclestage")).strip(),
    }
    return ExternalContact(
        external_id=str(result["id"]),
        email=text_of(properties.get("email")),
        first_name=text_of(properties.get("firstname")),
        last_name=text_of(properties.get("lastname")),
        phone=text_of(properties.get("phone")),
        # "Unsubscribed from all email": HubSpot's opt-out of every subscription type.
        opted_out=text_of(properties.get("hs_email_optout")).strip().lower() == "true",
        fields={key: value for key, value in fields.items() if value},
        position=position,
    )


@dataclass
class _Keyset:
    since: int = 0
    seen: list[str] = field(default_factory=list)
    tie_after: int | None = None
    done: bool = False

    def encode(self) -> str:
        return json.dumps(
            {
                "since": self.since,
                "seen": self.seen,
                "tie_after": self.tie_after,
                "done": self.done,
            },
            sort_keys=True,
        )

    @classmethod
    def decode(cls, cursor: str) -> _Keyset:
        if not cursor:
            return cls()
        unreadable = PermanentError("the saved HubSpot position is unreadable: recreate the import")
        try:
            state = json.loads(cursor)
        except ValueError:
            raise unreadable from None
        if not isinstance(state, dict):
            raise unreadable
        since, seen = state.get("since", 0), state.get("seen", [])
        tie_after, done = state.get("tie_after"), state.get("done", False)
        if (
            not _is_int(since)
            or not isinstance(seen, list)
            or not all(isinstance(s, str) for s in seen)
            or not (tie_after is None or _is_int(tie_after))
            or not isinstance(done, bool)
        ):
            raise unreadable
        return cls(since=since, seen=list(seen), tie_after=tie_after, done=done)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class _Result:
    contact: dict[str, Any]
    id: str
    modified: int


class HubSpotConnector:
    """Reads one HubSpot account's contacts with a private-app or OAuth access token."""

    # How far behind the present a sync's bound is set: search indexes changes with a delay
    # of seconds, rarely more. What slips past it anyway is caught by LOOKBACK.
    lag = timedelta(minutes=1)

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str,
        portal: str = "",
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ):
        """`portal`: the HubSpot account (hub id). The searches of every connector of one
        portal in this process share its rate, as HubSpot counts them."""
        self._client = client or http.new_client(
            base_url.strip().rstrip("/") or DEFAULT_URL,
            {"Authorization": f"Bearer {access_token}"},
            timeout,
        )
        self._pacer = _pacer_of(portal) if portal else _Pacer()
        # Every search, retries included, waits for its slot (a hook on the client).
        hooks = self._client.event_hooks
        self._client.event_hooks = {**hooks, "request": [*hooks.get("request", []), self._pace]}

    def close(self) -> None:
        self._client.close()

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
        with http.deadline(deadline):  # each request ends by it, or fails
            until_ms = epoch_ms(until)
            state = _Keyset.decode(cursor)
            floor = 0  # where the previous chain ended: a chain never ends before it
            if state.done:  # a new chain, a little before where the last one ended
                floor = state.since
                state = _Keyset(since=max(0, state.since - LOOKBACK // _MS))
                if state.since > until_ms:  # the bound went backwards: nothing to read yet
                    return ContactPage(contacts=[], cursor=cursor, has_more=False)
            elif state.since > until_ms:  # a tie sweep ended right at the bound
                state.done = True
                return ContactPage(contacts=[], cursor=state.encode(), has_more=False)
            stage = criteria.lifecycle_stage if isinstance(criteria, HubSpotCriteria) else ""
            if state.tie_after is not None:
                return self._tie_page(state, stage)
            return self._time_page(state, stage, until_ms, floor)

    # -- the two phases --------------------------------------------------------------------

    def _time_page(self, state: _Keyset, stage: str, until_ms: int, floor: int) -> ContactPage:
        results, more = self._search(
            [
                _filter(MODIFIED, "GTE", state.since),
                _filter(MODIFIED, "LTE", until_ms),
            ],
            stage,
            sort=MODIFIED,
        )
        more = bool(results) and (more or len(results) >= PAGE_SIZE)
        if more and results[-1].modified == state.since:
            # A whole page in the millisecond `since`: sweep that tie group by id instead.
            state.tie_after = 0
            return self._tie_page(state, stage)
        seen = set(state.seen)
        fresh = [r for r in results if not (r.modified == state.since and r.id in seen)]
        # Each contact's position: every contact before its millisecond is read, and at it,
        # those already read at `since` and the ones of this page up to it.
        contacts = []
        at, read_at = state.since, list(state.seen)
        for r in fresh:
            if r.modified != at:
                at, read_at = r.modified, []
            read_at = [*read_at, r.id]
            contacts.append(to_contact(r.contact, _Keyset(since=at, seen=read_at).encode()))
        if results:
            last = results[-1].modified
            at_last = [r.id for r in results if r.modified == last]
            if last == state.since:
                at_last = [*state.seen, *(i for i in at_last if i not in seen)]
            state.since, state.seen = last, at_last
        state.done = not more
        if state.done and state.since < floor:
            # The lookback found nothing as recent as the previous chain's end (its last contact
            # was archived): end there again, or each chain would start further back.
            state.since, state.seen = floor, []
        return ContactPage(contacts=contacts, cursor=state.encode(), has_more=more)

    def _tie_page(self, state: _Keyset, stage: str) -> ContactPage:
        tie_after = state.tie_after or 0
        results, more = self._search(
            [
                _filter(MODIFIED, "EQ", state.since),
                _filter(OBJECT_ID, "GT", tie_after),
            ],
            stage,
            sort=OBJECT_ID,
        )
        seen = set(state.seen)
        fresh = [r for r in results if r.id not in seen]
        # In id order: every id of the tie group up to a contact's is read once it is.
        contacts = [
            to_contact(
                r.contact,
                _Keyset(since=state.since, seen=state.seen, tie_after=_object_id(r)).encode(),
            )
            for r in fresh
        ]
        if (more or len(results) >= PAGE_SIZE) and results:
            state.tie_after = _object_id(results[-1])
        else:  # the tie group is done: everything up to `since` is read
            state.since, state.seen, state.tie_after = state.since + 1, [], None
        return ContactPage(contacts=contacts, cursor=state.encode(), has_more=True)

    # -- the connection check --------------------------------------------------------------

    def check_connection(
        self, criteria: Criteria, external_account: str, *, deadline: float | None = None
    ) -> list[Finding]:
        """The account's details (the token works, and whose portal it is, with the daily
        limit's headers), then a one-contact search with the criteria (the token may read
        contacts)."""
        try:
            with http.deadline(deadline):  # each request ends by it, or fails
                return self._check(criteria, external_account)
        except AuthError as e:  # on any of its requests
            return credentials_rejected(str(e))

    def _check(self, criteria: Criteria, external_account: str) -> list[Finding]:
        details = self._send("GET", DETAILS_PATH)
        findings = [
            Finding("credentials", True, "HubSpot accepted the access token"),
            _portal_finding(details, external_account),
        ]
        stage = criteria.lifecycle_stage if isinstance(criteria, HubSpotCriteria) else ""
        filters = [{"propertyName": "lifecyclestage", "operator": "EQ", "value": stage}]
        search = self._send(
            "POST",
            SEARCH_PATH,
            json={
                "filterGroups": [{"filters": filters}] if stage else [],
                "properties": ["email"],
                "limit": 1,
                "after": "0",
            },
        )
        daily = _daily_finding(details)
        if search.status_code == 429 and _policy(search) == "DAILY":
            findings.append(Finding("scopes", False, f"not checked: {DAILY_LIMIT_MESSAGE}"))
            daily = Finding("quota", False, DAILY_LIMIT_MESSAGE)
        elif search.status_code == 403 and _category(search) == "MISSING_SCOPES":
            needed = ", ".join(_required_scopes(search)) or CONTACTS_SCOPE
            findings.append(
                Finding(
                    "scopes",
                    False,
                    f"the token may not read contacts: it needs the scope {needed}; add it to "
                    "the app and use its new token",
                )
            )
        elif search.status_code >= 400:
            _raise_for(search)
        else:
            findings.append(Finding("scopes", True, "the token may read the contacts"))
        findings.append(daily)
        return findings

    def _send(self, method: str, path: str, json: Any = None) -> httpx.Response:
        """A check's request: a 2xx, a 403 or a 4xx HubSpot explains (after retries); a 401
        raises AuthError."""
        return http.send(
            self._client,
            method,
            path,
            service="HubSpot",
            json=json,
            accept=_READ_HERE | {403},
            wait_hint=_wait_hint,
            retry_when=lambda r: r.status_code == MIGRATING,
        )

    # -- HTTP ------------------------------------------------------------------------------

    def _search(
        self, filters: list[dict[str, str]], stage: str, *, sort: str
    ) -> tuple[list[_Result], bool]:
        """One search from offset 0: its results, and whether more match."""
        if stage:
            filters = [
                *filters,
                {"propertyName": "lifecyclestage", "operator": "EQ", "value": stage},
            ]
        body = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": list(PROPERTIES),
            "limit": PAGE_SIZE,
            "after": "0",
        }
        response = http.send(
            self._client,
            "POST",
            SEARCH_PATH,
            service="HubSpot",
            json=body,
            accept=_READ_HERE,
            wait_hint=_wait_hint,
            retry_when=lambda r: r.status_code == MIGRATING,
        )
        if response.status_code >= 400:
            _raise_for(response)
        try:
            data = response.json()
            results = [_read(r) for r in data["results"]]
            more = bool(((data.get("paging") or {}).get("next") or {}).get("after"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RetryableError("HubSpot sent an unreadable search result") from None
        return results, more

    def _pace(self, request: httpx.Request) -> None:
        if request.url.path.endswith("/search"):
            self._pacer.wait()


class _Pacer:
    """One HubSpot account's searches: never more than SEARCHES_PER_SECOND in any
    PACING_WINDOW. A sliding window rather than even spacing: a sync's first searches go at
    once (spaced, a 500-contact sync waited half a second), and the account's rate holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()  # monotonic times of the window's searches

    def wait(self) -> None:
        with self._lock:  # held while waiting: the next search waits for the slot after this
            while True:
                now = time.monotonic()
                while self._sent and self._sent[0] <= now - PACING_WINDOW:
                    self._sent.popleft()
                if len(self._sent) < SEARCHES_PER_SECOND:
                    self._sent.append(now)
                    return
                time.sleep(self._sent[0] + PACING_WINDOW - now)


_PACERS: dict[str, _Pacer] = {}
_PACERS_LOCK = threading.Lock()


def _pacer_of(portal: str) -> _Pacer:
    with _PACERS_LOCK:
        return _PACERS.setdefault(portal, _Pacer())


def _filter(name: str, operator: str, value: int) -> dict[str, str]:
    return {"propertyName": name, "operator": operator, "value": str(value)}


def _read(result: dict[str, Any]) -> _Result:
    properties = result.get("properties") or {}
    modified = properties.get(MODIFIED) or result["updatedAt"]
    return _Result(contact=result, id=str(result["id"]), modified=parse_ms(modified))


def _object_id(result: _Result) -> int:
    try:
        return int(result.id)
    except ValueError:
        raise RetryableError("HubSpot sent a contact id that is not a number") from None


def _policy(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("policyName") or "") if isinstance(body, dict) else ""


def _category(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("category") or "") if isinstance(body, dict) else ""


def _required_scopes(response: httpx.Response) -> list[str]:
    """The scopes a MISSING_SCOPES answer names (errors[].context.requiredGranularScopes)."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        return []
    scopes: list[str] = []
    for error in errors if isinstance(errors, list) else ():
        context = error.get("context") if isinstance(error, dict) else None
        for key in ("requiredGranularScopes", "requiredScopes"):
            names = context.get(key) if isinstance(context, dict) else None
            scopes += [n for n in names if isinstance(n, str)] if isinstance(names, list) else []
    return list(dict.fromkeys(scopes))


def _portal_finding(details: httpx.Response, external_account: str) -> Finding:
    """Whose portal the token reaches; not confirmed when the token may not read it."""
    if details.status_code == 403:
        return Finding(
            "external account",
            True,
            "not confirmed: the token may not read the account's details "
            f"({http.error_message(details)}); make sure it is portal {external_account}'s",
        )
    if details.status_code >= 400:
        _raise_for(details)
    try:
        portal = text_of(details.json().get("portalId"))
    except (ValueError, AttributeError):
        raise RetryableError("HubSpot sent unreadable account details") from None
    if portal and portal_identity(portal) == portal_identity(external_account):
        return Finding("external account", True, f"the token is portal {portal}'s")
    return Finding(
        "external account",
        False,
        f"the token is portal {portal or '(unknown)'}'s, not portal {external_account}'s: use "
        f"a token of portal {external_account}, or import from portal {portal}",
    )


def _daily_finding(details: httpx.Response) -> Finding:
    """The daily limit left, from the headers HubSpot sends a private app's token."""
    try:
        limit = int(details.headers[DAILY])
        left = int(details.headers[DAILY_REMAINING])
    except (KeyError, ValueError):
        return Finding(
            "quota",
            True,
            "HubSpot does not say how much of the daily limit is left (it sends no daily-limit "
            "headers to OAuth apps): the account's API usage is shown in its settings",
        )
    return Finding(
        "quota",
        left > 0,
        f"{left} of the {limit} API calls a day are left"
        + ("" if left > 0 else f": {DAILY_LIMIT_MESSAGE}"),
    )


def _wait_hint(response: httpx.Response) -> float | None:
    """How long to wait before retrying a 429, by its policy; DAILY: no retry (infinite)."""
    if response.status_code != 429:
        return None
    policy = _policy(response)
    if policy == "DAILY":
        return math.inf
    after = http.retry_after(response)
    if after is not None:
        return after
    return TEN_SECONDLY_WAIT if policy == "TEN_SECONDLY_ROLLING" else SECONDLY_WAIT


def _raise_for(response: httpx.Response) -> None:
    status = response.status_code
    log.warning("HubSpot POST %s answered HTTP %d", SEARCH_PATH, status)
    if status == 429:
        if _policy(response) == "DAILY":
            raise RetryableError(DAILY_LIMIT_MESSAGE)
        raise RetryableError(RATE_LIMITED_MESSAGE)
    if status == MIGRATING:
        raise RetryableError(MIGRATING_MESSAGE)
    raise PermanentError(
        f"HubSpot refused the request (HTTP {status}): {http.error_message(response)}"
    )


# -- the service as the rest of the service sees it ---------------------------------------------
# HubSpot's default lifecycle stages; custom stages have numeric ids.
LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
_CUSTOM_STAGE = re.compile(r"[0-9]{1,20}")
_PORTAL_ID = re.compile(r"[1-9][0-9]{0,11}")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class HubSpotCriteria(Criteria):
    service = "hubspot"
    lifecycle_stage: str = field(
        default="", metadata={"help": "only contacts in this lifecycle stage"}
    )

    def validate(self, violations: Violations, field: str) -> None:
        stage = self.lifecycle_stage
        if stage and stage not in LIFECYCLE_STAGES and not _CUSTOM_STAGE.fullmatch(stage):
            violations.add(
                f"{field}.lifecycle_stage",
                f"must be one of {', '.join(LIFECYCLE_STAGES)}, a custom stage id "
                "(digits), or empty for any stage",
            )


def normalize_account(value: str) -> str:
    if not _PORTAL_ID.fullmatch(value):
        raise ValueError("must be the HubSpot portal (hub) id, digits only")
    return value


def portal_identity(value: str) -> str:
    """The portal id's digits without leading zeros (a number: `0012345` is portal 12345)."""
    return (value.lstrip("0") or "0") if _DIGITS.fullmatch(value) else value


def connect(target: ImportTarget, settings: Mapping[str, str]) -> HubSpotConnector:
    return HubSpotConnector(
        target.credentials.access_token, base_url=settings["url"], portal=target.external_account
    )


SOURCE = Source(
    id="hubspot",
    display_name="HubSpot",
    description="the contacts of a HubSpot CRM portal (CRM search API), with a private app token",
    criteria_type=HubSpotCriteria,
    criteria_description="all contacts, or those in one lifecycle stage",
    fields=(
        FieldSpec("company", "Company"),
        FieldSpec("job_title", "Job Title"),
        FieldSpec("lifecycle_stage", "Lifecycle Stage"),
    ),
    normalize_account=normalize_account,
    account_identity=portal_identity,
    external_account_help="the HubSpot portal (hub) id",
    connect=connect,
    settings=(Setting("url", "AUTOIMPORT_HUBSPOT_URL", DEFAULT_URL, "CRM API", url=True),),
)

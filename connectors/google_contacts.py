"""Google Contacts (People API v1, `people.connections.list`), with OAuth access tokens refreshed.

Reading: `GET /v1/people/me/connections` in chains. A chain starts without a sync token (a full
sync: every contact) or with the sync token the previous chain ended with (an incremental sync:
the contacts changed since, deleted ones as tombstones), follows `nextPageToken` page by page,
and its last page carries `nextSyncToken`, where the next chain starts. Google refuses a
pageToken or a syncToken sent with other parameters than the chain's first request, so every
request sends CHAIN_PARAMS unchanged.

The cursor is JSON with sorted keys: {"sync_token": the token the running chain started from
("" for a full sync), "page_token": the page to read next ("" for the chain's first page)}. At
the chain's last page it becomes {"sync_token": nextSyncToken, "page_token": ""}.

Each contact carries its position, so that a sync stopped by a cap resumes right after the last
contact it processed: the page's cursor plus the cut, {"read": how many of the page's persons
were read, "last": the resource names of the (up to ANCHORS) persons just before the cut, nearest
first, "next": those just after it}; the page's last contact carries the cursor of what follows
the page. Resuming asks for the same page again and drops what was read. Google promises nothing
about a page asked for twice, so the cut is found again by name, not by count: a person changed
or deleted meanwhile may be gone from the page (it comes with the next chain, whose changes
start from this chain's sync token), so the page resumes before the first of "next" still there,
else after the first of "last". A page that shows neither, or shows more persons before the cut
than were read, is read whole again: counted twice, never passed over. The chain's first page
has no page token: asking for it again starts a new chain, whose sync token covers the changes
made meanwhile, so dropping a person changed since would lose that change; there the cut also
holds "digest", a hash of the resource names and etags read before it, and is kept only when
the new first page starts with exactly those persons, unchanged. A position whose page token
Google refuses, or whose sync token expired, restarts its chain as a page's cursor does (below),
its cut forgotten. Cursors saved before positions existed name a page, read whole.

Google's sync token, not a clock, bounds what a chain reads: a contact changed during a sync is
in the changes after the token the chain ends with, so the next sync reads it. Hence `lag` is
zero and `fetch_page` ignores `until`. A sync token expires (7 days after it was issued, or now
and then for no stated reason): the connector starts a full sync at once, so a sync never fails
for it. A page token Google refuses restarts its chain once.

Criteria (one contact group) are applied here: connections.list has no such filter.

OAuth: the access token travels as `Authorization: Bearer`. It is refreshed at the token endpoint
with the import's refresh token and the server's OAuth client shortly before it expires, and on
a 401; the new credentials ride on the next page returned (ContactPage.credentials), which the
engine saves. No token, refresh token or client secret reaches a log line or an exception: the
texts taken from Google's answers are scrubbed of them too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from email_validator import EmailNotValidError, validate_email

from connectors import http
from connectors.base import (
    CONNECTION_CHECKS,
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
from domain.import_settings import Credentials
from domain.sources import Criteria
from domain.sync import ContactPage, ExternalContact

log = logging.getLogger(__name__)

DEFAULT_URL = "https://people.googleapis.com"
DEFAULT_OAUTH_URL = "https://oauth2.googleapis.com"
PATH = "/v1/people/me/connections"
ME_PATH = "/v1/people/me"  # people.get: the account's own person
TOKEN_PATH = "/token"
CONTACTS_SCOPE = "https://www.googleapis.com/auth/contacts.readonly"
QUOTA_PAGE = "https://console.cloud.google.com/apis/api/people.googleapis.com/quotas"
SERVICE = "Google"
PAGE_SIZE = 1000  # Google's maximum
PERSON_FIELDS = "names,emailAddresses,phoneNumbers,organizations,birthdays,memberships,metadata"
# Sent unchanged with every request of every chain: Google answers 400 to a pageToken or a
# syncToken sent with other parameters than the first request of its chain.
CHAIN_PARAMS: dict[str, str] = {
    "personFields": PERSON_FIELDS,
    "pageSize": str(PAGE_SIZE),
    "requestSyncToken": "true",
}
# An access token expiring sooner than this is refreshed before the next request.
REFRESH_MARGIN = timedelta(seconds=60)
# Resource names a position keeps on each side of its cut, to find it again in a page that
# lost some persons since (changed or deleted: see the module's docstring).
ANCHORS = 3
CLIENT_ID_ENV = "AUTOIMPORT_GOOGLE_CLIENT_ID"
CLIENT_SECRET_ENV = "AUTOIMPORT_GOOGLE_CLIENT_SECRET"

EXPIRED_SYNC_TOKEN = "EXPIRED_SYNC_TOKEN"
EXPIRED_MESSAGE = "Sync token is expired"
# 403 reasons that mean "slow down" (as Google's own Python client reads them), not "forbidden".
RATE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
)
SCOPE_REASONS = frozenset({"ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficientPermissions"})
DISABLED_REASONS = frozenset({"SERVICE_DISABLED", "accessNotConfigured"})

REJECTED = f"{SERVICE} rejected the credentials: reconnect the account"
REVOKED = (
    "Google revoked this import's access (invalid_grant): reconnect the Google account and "
    "update the import's credentials"
)
NO_REFRESH_TOKEN = (
    "this import has no Google refresh token to renew its access with: reconnect the Google "
    "account and update the import's credentials"
)
NO_SCOPE = (
    "Google did not grant this import access to the contacts (insufficient scopes): reconnect "
    "the Google account allowing contacts access, and update the import's credentials"
)
NO_QUOTA_SAID = (
    "Google does not say how much of its quota is left: the People API's read requests per "
    f"minute are shown on the Google Cloud console's quota page ({QUOTA_PAGE})"
)
QUOTA_USED_UP = "not checked: Google's quota of People API requests is used up for now (HTTP 429)"
NO_CLIENT = (
    f"the server has no Google OAuth client to renew access tokens with: set {CLIENT_ID_ENV} "
    f"and {CLIENT_SECRET_ENV}"
)


def _instant(value: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def iso_utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- Google's errors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GoogleError:
    """What a Google error body says: google.rpc.Status, the legacy `errors[]`, or OAuth's
    {"error": code, "error_description": text}."""

    status: str  # e.g. "INVALID_ARGUMENT", or OAuth's "invalid_grant"; "" when unknown
    message: str
    reasons: frozenset[str]

    @property
    def is_expired_sync_token(self) -> bool:
        return EXPIRED_SYNC_TOKEN in self.reasons or self.message.startswith(EXPIRED_MESSAGE)


def read_error(response: httpx.Response, limit: int = 300) -> GoogleError:
    """Reads an error body defensively: any part may be missing or of another type."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    status, message, reasons = "", "", set()
    if isinstance(error, dict):
        status = text_of(error.get("status"))
        message = text_of(error.get("message"))
        for key in ("details", "errors"):
            items = error.get(key)
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and isinstance(item.get("reason"), str):
                    reasons.add(item["reason"])
                    message = message or text_of(item.get("message"))
    elif isinstance(error, str) and isinstance(body, dict):
        status, message = error, text_of(body.get("error_description"))
    if not message:
        message = response.text.strip()[:limit] or response.reason_phrase
    return GoogleError(status=status, message=message[:limit], reasons=frozenset(reasons))


class ScopeMissing(ReauthRequired):
    """The grant does not allow reading the contacts: the person must reconnect allowing it."""


def _rate_limited(response: httpx.Response) -> bool:
    """A 403 that means "slow down", not "forbidden"."""
    return response.status_code == 403 and bool(read_error(response).reasons & RATE_LIMIT_REASONS)


# -- persons -------------------------------------------------------------------------------------


def _items(person: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = person.get(key)
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def primary(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The item Google marks primary (item order is not guaranteed), else the first; {} if none."""
    for item in items:
        metadata = item.get("metadata")
        if isinstance(metadata, dict) and metadata.get("primary") is True:
            return item
    return items[0] if items else {}


def _number(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def birthday_of(birthday: dict[str, Any]) -> str:
    """ "YYYY-MM-DD", "--MM-DD" when the year is unset (0 or missing), else the free text."""
    date = birthday.get("date")
    if isinstance(date, dict):
        year, month, day = (_number(date.get(k)) for k in ("year", "month", "day"))
        if 1 <= month <= 12 and 1 <= day <= 31:
            return f"{year:04d}-{month:02d}-{day:02d}" if year > 0 else f"--{month:02d}-{day:02d}"
    return text_of(birthday.get("text")).strip()


def is_deleted(person: dict[str, Any]) -> bool:
    metadata = person.get("metadata")
    return isinstance(metadata, dict) and metadata.get("deleted") is True


def groups_of(person: dict[str, Any]) -> set[str]:
    groups = set()
    for membership in _items(person, "memberships"):
        group = membership.get("contactGroupMembership")
        if not isinstance(group, dict):
            continue
        if group.get("contactGroupResourceName"):
            groups.add(text_of(group["contactGroupResourceName"]))
        elif group.get("contactGroupId"):  # the deprecated id: the resource name's last part
            groups.add(f"contactGroups/{group['contactGroupId']}")
    return groups


def to_contact(person: dict[str, Any], position: str | None = None) -> ExternalContact:
    resource_name = text_of(person.get("resourceName"))
    if is_deleted(person):  # a tombstone: the contact stays in the account, and is counted
        return ExternalContact(external_id=resource_name, email="", deleted=True, position=position)
    name = primary(_items(person, "names"))
    organization = primary(_items(person, "organizations"))
    fields = {
        "company": text_of(organization.get("name")).strip(),
        "job_title": text_of(organization.get("title")).strip(),
        "birthday": birthday_of(primary(_items(person, "birthdays"))),
    }
    return ExternalContact(
        external_id=resource_name,
        email=text_of(primary(_items(person, "emailAddresses")).get("value")).strip(),
        first_name=text_of(name.get("givenName")).strip(),
        last_name=text_of(name.get("familyName")).strip(),
        phone=text_of(primary(_items(person, "phoneNumbers")).get("value")).strip(),
        opted_out=False,  # Google Contacts has no email consent
        fields={key: value for key, value in fields.items() if value},
        position=position,
    )


def matches(criteria: Criteria, person: dict[str, Any]) -> bool:
    """Tombstones always pass: a contact deleted at Google lists no group any more."""
    if not isinstance(criteria, GoogleContactsCriteria) or not criteria.contact_group:
        return True
    return is_deleted(person) or criteria.contact_group in groups_of(person)


# -- the connector -------------------------------------------------------------------------------


def _cursor(sync_token: str, page_token: str) -> str:
    return json.dumps({"sync_token": sync_token, "page_token": page_token}, sort_keys=True)


@dataclass(frozen=True)
class _Cut:
    """Where a page was cut: the part of a contact's position after its page's cursor."""

    read: int
    last: tuple[str, ...]
    next: tuple[str, ...]
    digest: str = ""  # the chain's first page only

    @classmethod
    def of(cls, state: dict[str, Any]) -> _Cut | None:
        read, digest = state.get("read"), state.get("digest", "")
        if read is None:
            return None  # a page's cursor (or a position saved before cuts existed)
        last, next_ = _names(state.get("last")), _names(state.get("next"))
        if (
            not isinstance(read, int)
            or isinstance(read, bool)
            or read < 1
            or last is None
            or next_ is None
            or not isinstance(digest, str)
        ):
            log.warning("a saved Google Contacts position is unreadable: reading its page whole")
            return None
        return cls(read, last, next_, digest)

    def resume_at(self, persons: list[dict[str, Any]], first_page: bool) -> int:
        """How many of the page's persons (the page asked for again) to pass over."""
        if first_page:
            same = len(persons) >= self.read and bool(self.digest)
            if same and _prefix_digests(persons[: self.read])[-1] == self.digest:
                return self.read
            log.info(
                "Google Contacts: persons read before a cap changed since: reading the chain's "
                "first page whole again"
            )
            return 0
        at = {text_of(p["resourceName"]): i for i, p in enumerate(persons)}
        after = next((at[name] for name in self.next if name in at), None)
        if after is None:
            after = next((at[name] + 1 for name in self.last if name in at), None)
        # Removals keep the cut where it was; a page showing more persons before it than were
        # read, or the persons around it in another order, did not just lose some: read whole.
        if after is None or after > self.read or any(at[n] >= after for n in self.last if n in at):
            log.info("Google Contacts: a capped page changed since: reading it whole again")
            return 0
        return after


def _names(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        return None
    return tuple(value)


def _prefix_digests(persons: list[dict[str, Any]]) -> list[str | None]:
    """For each person, a hash of the resource names and etags of the persons up to it; None
    from the first person without an etag on (its version cannot be told apart)."""
    digest, known, digests = hashlib.sha256(), True, []
    for person in persons:
        etag = person.get("etag")
        known = known and isinstance(etag, str) and bool(etag)
        if known:
            digest.update(json.dumps([text_of(person["resourceName"]), etag]).encode())
        digests.append(digest.hexdigest()[:32] if known else None)
    return digests


def _positions(sync_token: str, page_token: str, persons: list[dict[str, Any]]) -> list[str | None]:
    """The position right after each of the page's persons (see the module's docstring)."""
    names = [text_of(p["resourceName"]) for p in persons]
    digests = _prefix_digests(persons) if not page_token else []
    positions: list[str | None] = []
    for read in range(1, len(persons) + 1):
        state: dict[str, Any] = {
            "sync_token": sync_token,
            "page_token": page_token,
            "read": read,
            "last": names[max(0, read - ANCHORS) : read][::-1],
            "next": names[read : read + ANCHORS],
        }
        if not page_token:  # the chain's first page: the cut holds only for the same persons
            if digests[read - 1] is None:
                positions.append(None)
                continue
            state["digest"] = digests[read - 1]
        positions.append(json.dumps(state, sort_keys=True))
    return positions


class GoogleContactsConnector:
    """Reads one Google account's contacts with an OAuth access token, refreshed as needed."""

    # Sync tokens, not timestamps, bound what a chain reads (see the module's docstring): there
    # is no clock whose lag to allow for.
    lag = timedelta(0)

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str,
        oauth_url: str,
        client_id: str,
        client_secret: str,
        timeout: float = 30.0,
    ):
        self._credentials = credentials
        self._client_id = client_id.strip()
        self._client_secret = client_secret.strip()
        self._client = http.new_client(
            base_url.rstrip("/") or DEFAULT_URL,
            {"Authorization": f"Bearer {credentials.access_token}"},
            timeout,
        )
        self._oauth = http.new_client(oauth_url.rstrip("/") or DEFAULT_OAUTH_URL, {}, timeout)
        self._rotated: Credentials | None = None  # refreshed, not yet handed over with a page
        self._refreshes = 0  # access tokens renewed by this connector
        # Every secret this connector held: never in a text it passes on.
        self._secrets = {credentials.access_token, credentials.refresh_token, self._client_secret}

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    def close(self) -> None:
        self._client.close()
        self._oauth.close()

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
        """The page `cursor` names. `until` is not used: sync tokens bound what is read."""
        with http.deadline(deadline):  # each request ends by it, or fails
            if not self._client_id or not self._client_secret:
                raise PermanentError(NO_CLIENT)
            asked_sync, asked_page, cut = self._decode(cursor)
            body, sync_token, page_token = self._read(asked_sync, asked_page)
            people = body.get("connections") or []
            if not isinstance(people, list):
                raise RetryableError("Google sent an unreadable list of contacts")
            persons = [p for p in people if isinstance(p, dict) and p.get("resourceName")]
            next_page = text_of(body.get("nextPageToken"))
            if next_page:
                next_cursor = _cursor(sync_token, next_page)
            elif body.get("nextSyncToken"):  # the chain is done: the next one starts from here
                next_cursor = _cursor(text_of(body["nextSyncToken"]), "")
            else:  # cannot happen with requestSyncToken=true: read the same changes again next time
                log.warning("Google ended a chain without a sync token: it will be read again")
                next_cursor = _cursor(sync_token, "")
            start = 0
            if cut is not None and (sync_token, page_token) == (asked_sync, asked_page):
                start = cut.resume_at(persons, first_page=not page_token)  # else a restarted chain
            positions = _positions(sync_token, page_token, persons)
            contacts = [
                to_contact(person, position)
                for person, position in zip(persons[start:], positions[start:], strict=True)
                if matches(criteria, person)
            ]
            if contacts:  # right after the page's last contact: what follows the page
                contacts[-1] = replace(contacts[-1], position=next_cursor)
            rotated, self._rotated = self._rotated, None
            return ContactPage(
                contacts=contacts, cursor=next_cursor, has_more=bool(next_page), credentials=rotated
            )

    def _decode(self, cursor: str) -> tuple[str, str, _Cut | None]:
        """The page a cursor names (sync token, page token), and where it was cut, if it was."""
        if not cursor:
            return "", "", None
        try:
            state = json.loads(cursor)
        except ValueError:
            state = None
        if (
            not isinstance(state, dict)
            or not isinstance(state.get("sync_token", ""), str)
            or not isinstance(state.get("page_token", ""), str)
        ):
            log.warning("the saved Google Contacts position is unreadable: reading every contact")
            return "", "", None
        return state.get("sync_token", ""), state.get("page_token", ""), _Cut.of(state)

    # -- reading -------------------------------------------------------------------------------

    def _read(self, sync_token: str, page_token: str) -> tuple[dict[str, Any], str, str]:
        """One page of the chain that started from `sync_token`, and the sync and page tokens
        that read it: other ones when an expired token turned it into a full sync ("", "") or a
        refused page token restarted its chain (sync_token, "")."""
        restarted = False
        while True:
            params = dict(CHAIN_PARAMS)
            if sync_token:
                params["syncToken"] = sync_token
            if page_token:
                params["pageToken"] = page_token
            response = self._get(params)
            if response.status_code < 400:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    raise RetryableError("Google sent an unreadable list of contacts")
                return body, sync_token, page_token
            error = read_error(response)
            if sync_token and error.is_expired_sync_token:
                log.info(
                    "Google Contacts: the sync token expired (HTTP %d %s): reading every contact "
                    "again (a full sync)",
                    response.status_code,
                    error.status or "?",
                )
                sync_token, page_token = "", ""
                continue
            if page_token and not restarted:
                log.info(
                    "Google Contacts refused a page token (HTTP %d %s): reading the chain again "
                    "from its start",
                    response.status_code,
                    error.status or "?",
                )
                page_token, restarted = "", True
                continue
            log.warning(
                "Google GET %s answered HTTP %d %s", PATH, response.status_code, error.status
            )
            raise PermanentError(
                f"{SERVICE} refused the request (HTTP {response.status_code}): "
                f"{self._scrub(error.message)}"
            )

    def _get(
        self, params: dict[str, str], path: str = PATH, also: frozenset[int] = frozenset()
    ) -> httpx.Response:
        """A People request with a fresh access token: refreshed when about to expire, and once
        on a 401. Returns a 2xx, 400 or 410 response, or one of `also` (after its retries);
        raises on the rest."""
        if self._expiring():
            self._refresh("it expires")
        refreshed = False
        while True:
            response = self._send(params, path, also)
            if response.status_code != 401:
                return response
            if refreshed:
                log.warning("Google GET %s answered HTTP 401 after a refresh", path)
                raise AuthError(REJECTED)
            self._refresh("Google rejected it (HTTP 401)")
            refreshed = True

    def _send(self, params: dict[str, str], path: str, also: frozenset[int]) -> httpx.Response:
        """http.send retries 429, 5xx and a 403 whose reason is a rate limit."""
        response = http.send(
            self._client,
            "GET",
            path,
            service=SERVICE,
            params=params,
            accept={400, 401, 403, 410, *also},
            retry_when=_rate_limited,
        )
        if response.status_code == 403:
            raise self._forbidden(read_error(response), path)
        return response

    def _forbidden(self, error: GoogleError, path: str) -> Exception:
        log.warning("Google GET %s answered HTTP 403 %s", path, error.status)
        if error.reasons & RATE_LIMIT_REASONS:  # still, after every retry
            return RetryableError(
                f"{SERVICE} is rate limiting this account: the next sync tries again"
            )
        if error.reasons & SCOPE_REASONS:
            return ScopeMissing(NO_SCOPE)
        message = self._scrub(error.message)
        if error.reasons & DISABLED_REASONS:  # the People API is off in the client's project
            return PermanentError(f"{SERVICE} refused the request (HTTP 403): {message}")
        return AuthError(
            f"{SERVICE} refused access to the contacts (HTTP 403: {message}): reconnect the account"
        )

    # -- the connection check ------------------------------------------------------------------

    def check_connection(
        self, criteria: Criteria, external_account: str, *, deadline: float | None = None
    ) -> list[Finding]:
        """Reads the account's own person (people/me: the token works, refreshed if it
        expires, and whose account it is), then one connection and the criteria's contact
        group (the grant may read them). Google says nothing of the quota left but a 429."""
        if not self._client_id or not self._client_secret:
            raise PermanentError(NO_CLIENT)
        try:
            with http.deadline(deadline):  # each request ends by it, or fails
                return self._check(criteria, external_account)
        except AuthError as e:  # on any of its requests (ScopeMissing is read where it can be)
            return credentials_rejected(self._scrub(str(e)))

    def _check(self, criteria: Criteria, external_account: str) -> list[Finding]:
        refreshes = self._refreshes
        try:
            me = self._get({"personFields": "emailAddresses"}, ME_PATH, frozenset({429}))
        except ScopeMissing:
            me = None  # accepted, but may read neither the contacts nor the account's profile
        if me is not None and me.status_code == 429:
            return [
                *(Finding(check, False, QUOTA_USED_UP) for check in CONNECTION_CHECKS[:-1]),
                self._used_up(me),
            ]
        accepted = "Google accepted the access token" + (
            " (renewed with the refresh token: the one held had expired)"
            if self._refreshes > refreshes
            else ""
        )
        findings = [Finding("credentials", True, accepted), self._account(me, external_account)]
        scopes, exhausted = self._scopes(criteria)
        findings.append(scopes)
        findings.append(Finding("quota", True, NO_QUOTA_SAID) if exhausted is None else exhausted)
        return findings

    def _account(self, me: httpx.Response | None, external_account: str) -> Finding:
        """Whether people/me's email addresses include `external_account` (by its identity:
        Gmail's dots and +tags do not count)."""
        if me is None:
            return Finding(
                "external account",
                False,
                "Google would not show whose account this is: the grant allows neither the "
                f"contacts nor the account's profile; reconnect {external_account}",
            )
        try:
            body = me.json()
        except ValueError:
            body = None
        addresses = _items(body, "emailAddresses") if isinstance(body, dict) else []
        emails = [text_of(item.get("value")) for item in addresses if item.get("value")]
        wanted = account_identity(external_account)
        if any(account_identity(email) == wanted for email in emails):
            return Finding("external account", True, f"the credentials are {external_account}'s")
        if not emails:
            return Finding(
                "external account",
                True,
                "Google did not show the account's email address (the grant has no email "
                f"scope): make sure the account connected is {external_account}",
            )
        owner = text_of(primary(addresses).get("value")) or emails[0]
        return Finding(
            "external account",
            False,
            f"the credentials are those of the Google account {owner}, not {external_account}: "
            f"reconnect {external_account}, or import from {owner}",
        )

    def _scopes(self, criteria: Criteria) -> tuple[Finding, Finding | None]:
        """The scopes finding (one connection read; the criteria's group read), and the quota
        finding when a 429 said the quota is used up."""
        group = criteria.contact_group if isinstance(criteria, GoogleContactsCriteria) else ""
        try:
            answer = self._get(
                {"personFields": "metadata", "pageSize": "1"}, PATH, frozenset({429})
            )
            if answer.status_code < 400 and group:
                answer = self._get({"groupFields": "name"}, f"/v1/{group}", frozenset({404, 429}))
        except ScopeMissing:
            return Finding(
                "scopes",
                False,
                f"Google did not grant reading the contacts: the import needs the scope "
                f"{CONTACTS_SCOPE}; reconnect the Google account allowing contacts access",
            ), None
        status = answer.status_code
        if status == 429:
            return Finding("scopes", False, QUOTA_USED_UP), self._used_up(answer)
        if status == 404:
            return Finding(
                "scopes",
                False,
                f"the Google account has no contact group {group}: choose one of its groups",
            ), None
        if status >= 400:
            raise PermanentError(
                f"{SERVICE} refused the request (HTTP {status}): "
                f"{self._scrub(read_error(answer).message)}"
            )
        if not group:
            return Finding("scopes", True, "the grant may read the contacts"), None
        try:
            name = text_of(answer.json().get("formattedName") or answer.json().get("name"))
        except (ValueError, AttributeError):
            name = ""
        return Finding(
            "scopes", True, f"the grant may read the contacts and the group {name or group}"
        ), None

    def _used_up(self, response: httpx.Response) -> Finding:
        message = self._scrub(read_error(response).message)
        return Finding(
            "quota",
            False,
            f"Google's quota is used up (HTTP 429: {message}): try again later, or see the "
            f"quota page ({QUOTA_PAGE})",
        )

    # -- OAuth ---------------------------------------------------------------------------------

    def _expiring(self) -> bool:
        if not self._credentials.expires_at:
            return False
        expires_at = _instant(self._credentials.expires_at)
        return expires_at is not None and expires_at - datetime.now(UTC) <= REFRESH_MARGIN

    def _refresh(self, why: str) -> None:
        """A new access token from the refresh token; kept, and handed over with the next page."""
        refresh_token = self._credentials.refresh_token
        if not refresh_token:
            raise ReauthRequired(NO_REFRESH_TOKEN)
        log.info("Google Contacts: refreshing the access token (%s)", why)
        response = http.send(
            self._oauth,
            "POST",
            TOKEN_PATH,
            service="Google OAuth",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
            accept={400, 401, 403},
        )
        if response.status_code >= 400:
            raise self._refusal(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(token, str) or not token:
            raise RetryableError(
                "Google sent an unreadable token response: the next sync tries again"
            )
        expires_in = _number(body.get("expires_in"))
        new = Credentials(
            access_token=token,
            refresh_token=text_of(body.get("refresh_token")) or refresh_token,
            expires_at=iso_utc(datetime.now(UTC) + timedelta(seconds=expires_in))
            if expires_in > 0
            else "",
        )
        self._credentials = self._rotated = new
        self._refreshes += 1
        self._secrets |= {new.access_token, new.refresh_token}
        self._client.headers["Authorization"] = f"Bearer {token}"
        log.info("Google Contacts: access token refreshed, valid for %ds", expires_in)

    def _refusal(self, response: httpx.Response) -> Exception:
        error = read_error(response)
        log.warning(
            "Google OAuth POST %s answered HTTP %d %s",
            TOKEN_PATH,
            response.status_code,
            error.status,
        )
        if error.status == "invalid_grant":
            return ReauthRequired(REVOKED)
        if error.status in ("invalid_client", "unauthorized_client"):
            return PermanentError(
                f"Google refused the server's OAuth client ({error.status}): check "
                f"{CLIENT_ID_ENV} and {CLIENT_SECRET_ENV}; they must name the OAuth client that "
                "issued the import's refresh token"
            )
        return PermanentError(
            f"Google refused to renew the access token (HTTP {response.status_code}"
            f"{', ' + error.status if error.status else ''}): {self._scrub(error.message)}"
        )

    def _scrub(self, text: str) -> str:
        """`text` (from Google) without any of the secrets this connector holds."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "<hidden>")
        return text


# -- the service as the rest of the service sees it ---------------------------------------------
_CONTACT_GROUP = re.compile(r"contactGroups/[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True)
class GoogleContactsCriteria(Criteria):
    service = "google_contacts"
    contact_group: str = field(
        default="",
        metadata={"help": 'only the members of this contact group ("contactGroups/...")'},
    )

    def validate(self, violations: Violations, field: str) -> None:
        if self.contact_group and not _CONTACT_GROUP.fullmatch(self.contact_group):
            violations.add(
                f"{field}.contact_group",
                "must be a contact group resource name such as 'contactGroups/myContacts', "
                "or empty for all contacts",
            )


def normalize_account(value: str) -> str:
    """The Google account's email, lower-cased."""
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as e:
        raise ValueError(f"must be the Google account's email address ({e})") from None


# Gmail delivers every dotted spelling and every +tag of a local part to one mailbox, and
# googlemail.com is another name of gmail.com (still given to accounts in Germany and the UK).
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def account_identity(value: str) -> str:
    """The email, lower-cased; at gmail.com or googlemail.com without dots or a +tag in the
    local part, at gmail.com. At any other domain (Google Workspace) dots are part of the
    address (`j.doe` and `jdoe` may be two people), but a +tag still reaches the same mailbox,
    so only the tag is dropped. Raw input and the normalized spelling give the same identity."""
    try:
        email = validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        email = value.lower()  # not an address: its spelling is all there is to compare
    local, at, domain = email.rpartition("@")
    if not at:
        return email
    untagged = local.partition("+")[0] or local
    if domain in _GMAIL_DOMAINS:
        return f"{untagged.replace('.', '') or untagged}@gmail.com"
    return f"{untagged}@{domain}"


def _check_settings(values: Mapping[str, str]) -> None:
    if bool(values["client_id"]) != bool(values["client_secret"]):
        raise ValueError(f"set both {CLIENT_ID_ENV} and {CLIENT_SECRET_ENV}, or neither")


def connect(target: ImportTarget, settings: Mapping[str, str]) -> GoogleContactsConnector:
    return GoogleContactsConnector(
        target.credentials,
        base_url=settings["url"],
        oauth_url=settings["oauth_url"],
        client_id=settings["client_id"],
        client_secret=settings["client_secret"],
    )


SOURCE = Source(
    id="google_contacts",
    display_name="Google Contacts",
    description="the contacts of a Google account (People API), with OAuth access tokens",
    criteria_type=GoogleContactsCriteria,
    criteria_description="all contacts, or the members of one contact group",
    fields=(
        FieldSpec("company", "Company"),
        FieldSpec("job_title", "Job Title"),
        FieldSpec("birthday", "Birthday"),
    ),
    normalize_account=normalize_account,
    account_identity=account_identity,
    external_account_help="the Google account's email address",
    connect=connect,
    settings=(
        Setting("url", "AUTOIMPORT_GOOGLE_CONTACTS_URL", DEFAULT_URL, "People API", url=True),
        Setting(
            "oauth_url",
            "AUTOIMPORT_GOOGLE_OAUTH_URL",
            DEFAULT_OAUTH_URL,
            "OAuth token endpoint",
            url=True,
        ),
        Setting("client_id", CLIENT_ID_ENV, "", "OAuth client that refreshes access tokens"),
        Setting("client_secret", CLIENT_SECRET_ENV, "", "that OAuth client's secret", secret=True),
    ),
    check_settings=_check_settings,
    refresh_token_needed="access tokens expire after an hour",
)

"""What every connector provides: its service's `Source`, and contacts read page by page."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from domain.errors import Violations
from domain.import_settings import Credentials, check_token_sizes
from domain.limits import MAX_EXTERNAL_ACCOUNT, NO_NUL
from domain.sources import Criteria, field_title, personalization_tag
from domain.sync import ContactPage, DeclaredField


@dataclass(frozen=True)
class FieldSpec:
    """A value the connector reads into a custom field of the account (fixed, never mapped)."""

    key: str
    label: str


@dataclass(frozen=True)
class Setting:
    """One setting of a connector, read from the environment variable `env` at start-up."""

    name: str  # the key the source's `connect` reads it by
    env: str  # e.g. AUTOIMPORT_HUBSPOT_URL
    default: str = ""
    description: str = ""
    # An http(s) base URL: checked at start-up, probed by `autoimport doctor`.
    url: bool = False
    # Never shown (repr, doctor, logs).
    secret: bool = False
    # What an empty value means, when it means something (e.g. each shop's own URL).
    when_empty: str = ""


class ImportTarget(Protocol):
    """What a connector is built for: the external account an import reads, with its
    credentials (an AutoImport, or what a person is about to create)."""

    @property
    def service(self) -> str: ...

    @property
    def external_account(self) -> str: ...

    @property
    def credentials(self) -> Credentials: ...


def _as_typed(value: str) -> str:
    return value.strip()


def _no_settings_rule(values: Mapping[str, str]) -> None:
    pass


@dataclass(frozen=True)
class Source:
    """Everything about one external service, in one place: the registry
    (`connectors.SOURCES`) lists one per service, and the API, the CLI, the configuration, the
    domain's rules and the sync engine all read it from there.

    `normalize_account` gives an external account's canonical spelling, or raises ValueError
    saying what the account must look like; `account_identity` its one identity however it is
    spelled (the key of the budget its imports share); `connect` builds the connector that reads
    a target with the source's settings (by `Setting.name`); `check_settings` raises ValueError
    when the settings are inconsistent with each other.
    """

    id: str
    display_name: str
    description: str  # what it imports, for a person choosing a service
    criteria_type: type[Criteria]
    criteria_description: str
    fields: tuple[FieldSpec, ...]
    normalize_account: Callable[[str], str]
    connect: Callable[[ImportTarget, Mapping[str, str]], Connector]
    account_identity: Callable[[str], str] = _as_typed
    external_account_help: str = ""  # what a person types as the external account
    settings: tuple[Setting, ...] = ()
    check_settings: Callable[[Mapping[str, str]], None] = _no_settings_rule
    # Why the service needs a refresh token with the access token ("" when it does not).
    refresh_token_needed: str = ""

    def title_of(self, spec: FieldSpec) -> str:
        return field_title(self.display_name, spec.label)

    def tag_of(self, spec: FieldSpec) -> str:
        return personalization_tag(self.display_name, spec.label)

    def declared_fields(self) -> dict[str, DeclaredField]:
        return {
            spec.key: DeclaredField(spec.key, self.title_of(spec), self.tag_of(spec))
            for spec in self.fields
        }

    # -- the domain's SourceRules ------------------------------------------------------------
    def normalize_external_account(self, value: str, violations: Violations, field: str) -> str:
        if len(value) > MAX_EXTERNAL_ACCOUNT:
            violations.add(field, f"at most {MAX_EXTERNAL_ACCOUNT} characters")
            return value
        if "\0" in value:
            violations.add(field, NO_NUL)
            return value
        try:
            return self.normalize_account(value.strip())
        except ValueError as e:
            violations.add(field, str(e))
            return value

    def external_account_identity(self, external_account: str) -> str:
        return self.account_identity(external_account.strip())

    def check_credentials(
        self, credentials: Credentials, violations: Violations, path: str
    ) -> None:
        check_token_sizes(credentials, violations, path)
        if not credentials.access_token.strip():
            violations.add(f"{path}.access_token", "is required")
        if self.refresh_token_needed and not credentials.refresh_token.strip():
            violations.add(
                f"{path}.refresh_token",
                f"is required for {self.display_name} ({self.refresh_token_needed})",
            )

    def criteria_of(self, data: Mapping[str, Any]) -> Criteria:
        """An import's criteria from what its events stored."""
        return self.criteria_type.from_dict(data)

    def settings_with(self, values: Mapping[str, str]) -> dict[str, str]:
        """Every setting of the source: the given values over the defaults."""
        return {s.name: values.get(s.name, s.default) for s in self.settings}


def text_of(value: Any) -> str:
    """A JSON value as text: "" for null (APIs send null for an empty field)."""
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Finding:
    """One check of a connection: which (see `Connector.check_connection`), whether it
    passed, and what the service said, in words a person can act on."""

    check: str
    ok: bool
    detail: str


# The checks of `Connector.check_connection`, in order.
CONNECTION_CHECKS = ("credentials", "external account", "scopes", "quota")
NOT_TRIED = "not checked: the credentials were rejected"


def credentials_rejected(detail: str) -> list[Finding]:
    """The findings of a check whose credentials the service refused: the rest not tried."""
    return [
        Finding("credentials", False, detail),
        *(Finding(check, False, NOT_TRIED) for check in CONNECTION_CHECKS[1:]),
    ]


class ConnectorError(Exception):
    """A failure talking to the external service; the message says what a person can do."""


class RetryableError(ConnectorError):
    """Worth trying again later: rate limited, unavailable, timed out."""


DEADLINE_PASSED = "stopped at the caller's deadline: the next sync resumes where this one stopped"


class DeadlinePassed(RetryableError):
    """The caller of the sync stops waiting: the sync stops, and the next one resumes."""

    def __init__(self, message: str = DEADLINE_PASSED):
        super().__init__(message)


def seconds_left(deadline: float | None) -> float | None:
    """Seconds left before `deadline` (time.monotonic()), None when there is none."""
    return None if deadline is None else deadline - time.monotonic()


def check_deadline(deadline: float | None) -> None:
    left = seconds_left(deadline)
    if left is not None and left <= 0:
        raise DeadlinePassed()


class AuthError(ConnectorError):
    """The service rejected the credentials: the account must be reconnected."""


class ReauthRequired(AuthError):
    """The service revoked the import's grant (e.g. OAuth invalid_grant): only a person who
    reconnects the account can fix it, so the import waits in NEEDS_REAUTH until then."""


class PermanentError(ConnectorError):
    """A request the service will keep refusing (e.g. a criteria it does not know)."""


class Connector(Protocol):
    """Reads one external account's contacts that match an import's criteria, in a stable order
    (the order the cursor follows), page by page."""

    # How far behind the present the source's search may be: a sync reads only contacts changed
    # before its start minus this, so that none changed meanwhile is passed over.
    lag: timedelta

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
        """The contacts after `cursor` ("" for the beginning) changed at or before `until`.
        By `deadline` (time.monotonic(), None for none) it returns or raises DeadlinePassed:
        its requests are cut to it (connectors/http.py).

        Each contact's `position` is a cursor that, passed back here (by a later sync, with a
        later `until`), resumes right after that contact: a sync stopped by a cap resumes after
        the last contact it processed, so each record is read and counted once per pass over
        the source. A position never passes over a contact not yet returned (one sharing its
        timestamp, or changed meanwhile); None when the connector cannot resume inside a page.
        """
        ...

    def check_connection(
        self, criteria: Criteria, external_account: str, *, deadline: float | None = None
    ) -> list[Finding]:
        """What a person setting an import up needs to know before the first sync, each as a
        Finding, in this order: "credentials" (the service accepts them; an OAuth token that
        can be refreshed is refreshed), "external account" (they reach `external_account`,
        the import's normalized account, and not another one), "scopes" (they may read what
        `criteria` select), "quota" (what is left, where the service says; ok unless none is
        left). Saves nothing. A rejected credential is a finding, not an exception: once the
        credentials fail, the later checks say they were not tried. Raises RetryableError
        when the service cannot be reached, like fetch_page, and DeadlinePassed when `deadline`
        (time.monotonic()) comes first."""
        ...

    def close(self) -> None:
        """Releases what the connector holds (e.g. its HTTP connections)."""
        ...


# Builds the connector that reads a target's external account with its credentials.
ConnectorFactory = Callable[[ImportTarget], Connector]

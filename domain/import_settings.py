"""An import's settings as a caller gives them, checked and normalized: the credentials of the
external account, a new import, the changes of an edit, and the rules of their fields."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from domain.errors import Violations
from domain.limits import (
    MAX_DISPLAY_NAME,
    MAX_LABELS,
    MAX_LIST_ID,
    MAX_TAG,
    MAX_TOKEN,
    NO_NUL,
)
from domain.sources import Criteria

_LIST_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_LIST_ID}}}")


@dataclass(frozen=True)
class Credentials:
    """The external account's tokens. Kept out of repr() so that they never reach a log line."""

    access_token: str = field(repr=False)
    refresh_token: str = field(default="", repr=False)
    # When the access token expires (ISO 8601, UTC), when known: an OAuth connector refreshes it
    # before then. Empty for tokens that do not expire or whose expiry is unknown.
    expires_at: str = ""

    def same_grant(self, other: Credentials) -> bool:
        """The same tokens, whatever either knows of the access token's expiry."""
        return (self.access_token, self.refresh_token) == (other.access_token, other.refresh_token)

    def to_dict(self) -> dict[str, str]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
        }


def normalize_list_ids(
    values: list[str], violations: Violations, path: str = "list_ids"
) -> list[str]:
    return _normalize_labels(
        values,
        violations,
        path,
        _LIST_ID.fullmatch,
        f"must be a list id: 1 to {MAX_LIST_ID} letters, digits, '-' or '_'",
    )


def normalize_tags(values: list[str], violations: Violations, path: str = "tags") -> list[str]:
    return _normalize_labels(
        values,
        violations,
        path,
        lambda t: 0 < len(t) <= MAX_TAG,
        f"must be 1 to {MAX_TAG} characters",
    )


def _normalize_labels(
    values: list[str], violations: Violations, path: str, is_valid: Any, description: str
) -> list[str]:
    """Stripped, de-duplicated (first occurrence kept) and checked one by one."""
    if len(values) > MAX_LABELS:
        violations.add(path, f"at most {MAX_LABELS} values")
    result: list[str] = []
    for i, raw in enumerate(values):
        value = raw.strip()
        if "\0" in value:
            violations.add(f"{path}[{i}]", NO_NUL)
        elif not is_valid(value):
            violations.add(f"{path}[{i}]", description)
        elif value not in result:
            result.append(value)
    return result


def check_token_sizes(credentials: Credentials, violations: Violations, path: str) -> None:
    for name in ("access_token", "refresh_token"):
        token = getattr(credentials, name)
        if len(token) > MAX_TOKEN:
            violations.add(f"{path}.{name}", f"at most {MAX_TOKEN:,} characters")
        elif "\0" in token:
            violations.add(f"{path}.{name}", NO_NUL)


def check_display_name(value: str, violations: Violations) -> str:
    value = value.strip()
    if len(value) > MAX_DISPLAY_NAME:
        violations.add("display_name", f"at most {MAX_DISPLAY_NAME} characters")
    elif "\0" in value:
        violations.add("display_name", NO_NUL)
    return value


@dataclass(frozen=True)
class NewImport:
    """What a caller asks for when creating an import."""

    service: str
    external_account: str
    credentials: Credentials
    criteria: Criteria | None = None
    display_name: str = ""
    list_ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImportChanges:
    """An edit of an import: None leaves a field as it is."""

    display_name: str | None = None
    credentials: Credentials | None = None
    criteria: Criteria | None = None
    # Back to the service's default criteria: every contact.
    reset_criteria: bool = False
    list_ids: list[str] | None = None
    tags: list[str] | None = None

"""The Account aggregate (plan, contact limit, API keys) and the ApiKey index of its keys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import Violations
from domain.ids import ID_NAMESPACE
from domain.limits import MAX_ACCOUNT_ID, MAX_PLAN_LENGTH, NO_NUL

_ACCOUNT_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ACCOUNT_ID}}}")
API_KEY_SCHEME = "aik_"
# A key shown as its scheme and the next 8 characters (its key id): enough to tell keys apart,
# nothing of its secret.
API_KEY_PREFIX_LENGTH = len(API_KEY_SCHEME) + 8


def check_account_id(account_id: str, violations: Violations, path: str = "account_id") -> None:
    if not _ACCOUNT_ID.fullmatch(account_id):
        violations.add(path, f"must be 1 to {MAX_ACCOUNT_ID} letters, digits, '-' or '_'")


def check_plan(plan: str, contact_limit: int, violations: Violations, path: str = "") -> None:
    if not plan.strip() or len(plan.strip()) > MAX_PLAN_LENGTH:
        violations.add(f"{path}plan", f"is required, at most {MAX_PLAN_LENGTH} characters")
    elif "\0" in plan:
        violations.add(f"{path}plan", NO_NUL)
    if isinstance(contact_limit, bool) or contact_limit <= 0:
        violations.add(f"{path}contact_limit", "must be greater than 0")


def api_key_prefix(key: str) -> str:
    return key[:API_KEY_PREFIX_LENGTH]


def key_expire_time(
    now: datetime,
    expire_time: datetime | None,
    ttl: timedelta | None,
    violations: Violations,
) -> datetime | None:
    """When a new key expires (None: never), from an expire time or a time to live."""
    if expire_time is not None and ttl is not None:
        violations.add("expire_time", "give expire_time or ttl, not both")
    elif ttl is not None:
        if ttl <= timedelta(0):
            violations.add("ttl", "must be longer than 0 seconds")
            return None
        try:
            return now + ttl
        except OverflowError:  # past the year 9999
            violations.add("ttl", "is too long: give at most a few thousand years")
            return None
    elif expire_time is not None and expire_time <= now:
        violations.add("expire_time", "must be in the future (the key would never work)")
    return expire_time


class KeyStanding(StrEnum):
    """Whether a key opens its account now."""

    VALID = "valid"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ApiKeyInfo:
    """What the account knows of one of its keys: never the key, nor its hash."""

    key_id: str
    prefix: str
    creator: str  # the actor who created it ("" when unknown: a key older than the record)
    create_time: datetime | None
    expire_time: datetime | None
    revoke_time: datetime | None

    def standing(self, now: datetime) -> KeyStanding:
        if self.revoke_time is not None:
            return KeyStanding.REVOKED
        if self.expire_time is not None and self.expire_time <= now:
            return KeyStanding.EXPIRED
        return KeyStanding.VALID


class UnknownApiKey(KeyError):
    """The account has no key of this id."""


class Account(Aggregate):
    """An email-marketing account as the import service sees it."""

    # Version 2: each key is a record (prefix, creator, times, revocation) in api_keys where
    # version 1 listed api_key_ids; snapshots of version 1 get records in upcast_v1_v2.
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["api_keys"] = {
            key_id: _key_record(key_id, f"{API_KEY_SCHEME}{key_id}", "", None, None)
            for key_id in state.pop("api_key_ids")
        }

    @staticmethod
    def create_id(account_id: str) -> UUID:
        return uuid5(ID_NAMESPACE, f"account/{account_id}")

    @classmethod
    def register(cls, account_id: str, plan: str, contact_limit: int, *, actor: str) -> Account:
        violations = Violations()
        check_account_id(account_id, violations)
        check_plan(plan, contact_limit, violations)
        violations.raise_if_any()
        return cls(
            account_id=account_id, plan=plan.strip(), contact_limit=contact_limit, actor=actor
        )

    @event("Registered")
    def __init__(self, *, account_id: str, plan: str, contact_limit: int, actor: str) -> None:
        self.account_id = account_id
        self.plan = plan
        self.contact_limit = contact_limit
        self.contact_count = 0
        # By key id, in the order created: plain values (api_key_of gives the typed view), as
        # snapshots store the aggregate's attributes.
        self.api_keys: dict[str, dict[str, Any]] = {}

    class ContactsAdded(Aggregate.Event):
        count: int

    class ApiKeyCreated(Aggregate.Event):
        key_id: str
        actor: str
        prefix: str
        create_time: datetime
        expire_time: datetime | None

        # Version 1 had only key_id and actor: its keys, created as "aik_<key_id>_<secret>",
        # never expire.
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["prefix"] = f"{API_KEY_SCHEME}{state['key_id']}"
            state["create_time"] = state["timestamp"]
            state["expire_time"] = None

    class ApiKeyRevoked(Aggregate.Event):
        key_id: str
        actor: str
        revoke_time: datetime

    @property
    def capacity(self) -> int:
        """How many more contacts the account may hold."""
        return max(0, self.contact_limit - self.contact_count)

    def add_contacts(self, count: int) -> None:
        """Counts new contacts; saved with them, so concurrent syncs cannot exceed the limit."""
        if count > self.capacity:
            raise ValueError(f"the account has room for {self.capacity} contacts, not {count}")
        if count:
            self._add_contacts(count=count)

    @event(ContactsAdded)
    def _add_contacts(self, count: int) -> None:
        self.contact_count += count

    def change_plan(self, plan: str, contact_limit: int, *, actor: str) -> None:
        """A lower limit than the contacts held is allowed: it only stops new additions."""
        violations = Violations()
        check_plan(plan, contact_limit, violations)
        violations.raise_if_any()
        if (plan.strip(), contact_limit) != (self.plan, self.contact_limit):
            self._change_plan(plan=plan.strip(), contact_limit=contact_limit, actor=actor)

    @event("PlanChanged")
    def _change_plan(self, plan: str, contact_limit: int, actor: str) -> None:
        self.plan = plan
        self.contact_limit = contact_limit

    @property
    def api_key_ids(self) -> list[str]:
        return list(self.api_keys)

    def api_key_of(self, key_id: str) -> ApiKeyInfo | None:
        record = self.api_keys.get(key_id)
        return None if record is None else ApiKeyInfo(**record)

    def list_api_keys(self) -> list[ApiKeyInfo]:
        return [ApiKeyInfo(**record) for record in self.api_keys.values()]

    def add_api_key(
        self,
        key_id: str,
        key_hash: str,
        *,
        prefix: str,
        actor: str,
        now: datetime,
        expire_time: datetime | None = None,
        ttl: timedelta | None = None,
    ) -> ApiKey:
        """Records a new key, expiring at `expire_time` or after `ttl` (else never), and returns
        the index aggregate to save with the account. A key that would expire at or before
        `now` is refused (ValidationError)."""
        violations = Violations()
        expire_time = key_expire_time(now, expire_time, ttl, violations)
        violations.raise_if_any()
        self._add_api_key(
            key_id=key_id, actor=actor, prefix=prefix, create_time=now, expire_time=expire_time
        )
        return ApiKey(key_hash=key_hash, key_id=key_id, account_id=self.account_id)

    @event(ApiKeyCreated)
    def _add_api_key(
        self,
        key_id: str,
        actor: str,
        prefix: str,
        create_time: datetime,
        expire_time: datetime | None,
    ) -> None:
        self.api_keys[key_id] = _key_record(key_id, prefix, actor, create_time, expire_time)

    def revoke_api_key(self, key_id: str, *, actor: str, now: datetime) -> ApiKeyInfo:
        """Revokes the key from `now` on; a key already revoked stays as it was (the same
        answer for a retried revoke). Raises UnknownApiKey for a key id the account lacks."""
        found = self.api_key_of(key_id)
        if found is None:
            raise UnknownApiKey(key_id)
        if found.revoke_time is None:
            self._revoke_api_key(key_id=key_id, actor=actor, revoke_time=now)
        info = self.api_key_of(key_id)
        assert info is not None
        return info

    @event(ApiKeyRevoked)
    def _revoke_api_key(self, key_id: str, actor: str, revoke_time: datetime) -> None:
        self.api_keys[key_id]["revoke_time"] = revoke_time


def _key_record(
    key_id: str,
    prefix: str,
    creator: str,
    create_time: datetime | None,
    expire_time: datetime | None,
) -> dict[str, Any]:
    return {
        "key_id": key_id,
        "prefix": prefix,
        "creator": creator,
        "create_time": create_time,
        "expire_time": expire_time,
        "revoke_time": None,
    }


class ApiKey(Aggregate):
    """Index from a key's hash to its account, at an id derived from the hash (no key stored).
    It never changes: whether the key still opens the account (revoked, expired) is the
    account's to say."""

    @staticmethod
    def create_id(key_hash: str) -> UUID:
        return uuid5(ID_NAMESPACE, f"api-key/{key_hash}")

    @event("Created")
    def __init__(self, *, key_hash: str, key_id: str, account_id: str) -> None:
        self.key_id = key_id
        self.account_id = account_id

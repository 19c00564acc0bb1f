"""The Account aggregate (plan, contact limit, API keys) and the ApiKey index of its keys."""

from __future__ import annotations

import re
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import Violations
from domain.ids import ID_NAMESPACE
from domain.limits import MAX_ACCOUNT_ID, MAX_PLAN_LENGTH

_ACCOUNT_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ACCOUNT_ID}}}")


def check_account_id(account_id: str, violations: Violations, path: str = "account_id") -> None:
    if not _ACCOUNT_ID.fullmatch(account_id):
        violations.add(path, f"must be 1 to {MAX_ACCOUNT_ID} letters, digits, '-' or '_'")


def check_plan(plan: str, contact_limit: int, violations: Violations, path: str = "") -> None:
    if not plan.strip() or len(plan.strip()) > MAX_PLAN_LENGTH:
        violations.add(f"{path}plan", f"is required, at most {MAX_PLAN_LENGTH} characters")
    if isinstance(contact_limit, bool) or contact_limit <= 0:
        violations.add(f"{path}contact_limit", "must be greater than 0")


class Account(Aggregate):
    """An email-marketing account as the import service sees it."""

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
        self.api_key_ids: list[str] = []

    class ContactsAdded(Aggregate.Event):
        count: int

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

    def add_api_key(self, key_id: str, key_hash: str, *, actor: str) -> ApiKey:
        """Records a new key and returns the index aggregate to save with the account."""
        self._add_api_key(key_id=key_id, actor=actor)
        return ApiKey(key_hash=key_hash, key_id=key_id, account_id=self.account_id)

    @event("ApiKeyCreated")
    def _add_api_key(self, key_id: str, actor: str) -> None:
        self.api_key_ids.append(key_id)


class ApiKey(Aggregate):
    """Index from a key's hash to its account, at an id derived from the hash (no key stored)."""

    @staticmethod
    def create_id(key_hash: str) -> UUID:
        return uuid5(ID_NAMESPACE, f"api-key/{key_hash}")

    @event("Created")
    def __init__(self, *, key_hash: str, key_id: str, account_id: str) -> None:
        self.key_id = key_id
        self.account_id = account_id

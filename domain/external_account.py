"""The ExternalAccount aggregate: the 500-contact budget of one external account's sync window,
shared by every import of the account that reads it."""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.ids import ID_NAMESPACE

CONTACTS_PER_WINDOW = 500


def window_of(now: float, interval: float) -> int:
    """The number of the sync window holding `now` (seconds since the epoch): windows are
    consecutive spans of one sync interval."""
    return int(now // interval)


class ExternalAccount(Aggregate):
    @staticmethod
    def create_id(account_id: str, service: str, external_account: str) -> UUID:
        """`external_account` is the account's identity (its source's
        `external_account_identity`), not its spelling: every import of one external account
        shares one budget however it was typed, including imports stored before a spelling
        rule existed. (An account whose identity differs from the spelling that keyed it
        before this rule starts a new budget once, in the window it is first read again.)"""
        return uuid5(ID_NAMESPACE, f"external-account/{account_id}/{service}/{external_account}")

    class Opened(Aggregate.Created):
        account_id: str
        service: str
        # Its identity (budgets opened before identities existed: as spelled by the import)
        external_account: str

    class BudgetUsed(Aggregate.Event):
        window: int
        count: int

    @event(Opened)
    def __init__(self, *, account_id: str, service: str, external_account: str) -> None:
        self.account_id = account_id
        self.service = service
        self.external_account = external_account
        self.window = -1
        self.used = 0

    def window_in_force(self, window: int) -> int:
        """The window a page is charged to: the newest one seen. A replica whose clock runs
        behind, or a sync that began before the boundary, never takes the budget back to an
        older window (that would hand out a fresh 500)."""
        return max(window, self.window)

    def remaining(self, window: int) -> int:
        in_force = self.window_in_force(window)
        return CONTACTS_PER_WINDOW - (self.used if in_force == self.window else 0)

    def use(self, window: int, count: int) -> None:
        if count > self.remaining(window):
            raise ValueError(f"only {self.remaining(window)} contacts left in window {window}")
        if count:
            self._use(window=self.window_in_force(window), count=count)

    @event(BudgetUsed)
    def _use(self, window: int, count: int) -> None:
        # Events recorded before windows were kept from moving back may name an older window:
        # replayed as they were applied then.
        self.used = (self.used if window == self.window else 0) + count
        self.window = window

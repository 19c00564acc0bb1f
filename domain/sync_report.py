"""What one sync did: its outcome, its times and its counts, typed.

The aggregate's events and snapshots keep a report as a JSON dict (`to_dict`, read back by
`from_dict`). A report recorded before a field existed lacks it: `upcast_report` fills it with
its default, called by the upcasts of the events and snapshots that carry reports (eventsourcing's
class_version), so that `from_dict` reads only current reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class SyncOutcome(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    CAPPED = "CAPPED"
    LIMIT_REACHED = "LIMIT_REACHED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Skipped:
    """A contact the sync did not add, and why (a SkipReason's value)."""

    external_id: str
    email: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"external_id": self.external_id, "email": self.email, "reason": self.reason}


@dataclass(frozen=True)
class SyncReport:
    sync_id: str
    outcome: SyncOutcome
    start_time: datetime
    end_time: datetime | None = None  # None while it runs
    fetched: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_missing_email: int = 0
    skipped_invalid_email: int = 0
    # Records the source itself says are not to import (e.g. an unconfirmed opt-in).
    skipped_at_source: int = 0
    deferred: int = 0
    blocked_by_limit: int = 0
    fields_created: int = 0
    deleted_at_source: int = 0
    skipped: tuple[Skipped, ...] = ()  # the first ones only (MAX_SKIPPED_IN_REPORT)
    error: str = ""
    auth_failure: bool = False  # a failure caused by the credentials
    request_id: str = ""
    until: datetime | None = None  # contacts changed after this wait for the next sync

    @property
    def seconds(self) -> float | None:
        """How long the sync took; None while it runs."""
        if self.end_time is None:
            return None
        return max(0.0, (self.end_time - self.start_time).total_seconds())

    def counts(self) -> dict[str, int]:
        """The counters by name, as the API's SyncReport and the logs name them."""
        return {
            "fetched": self.fetched,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped_missing_email": self.skipped_missing_email,
            "skipped_invalid_email": self.skipped_invalid_email,
            "skipped_at_source": self.skipped_at_source,
            "deferred": self.deferred,
            "blocked_by_limit": self.blocked_by_limit,
            "deleted_at_source": self.deleted_at_source,
            "fields_created": self.fields_created,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "sync_id": self.sync_id,
            "outcome": self.outcome.value,
            "start_time": self.start_time.isoformat(),
            "end_time": _iso(self.end_time),
            **self.counts(),
            "skipped": [s.to_dict() for s in self.skipped],
            "error": self.error,
            "auth_failure": self.auth_failure,
            "request_id": self.request_id,
            "until": _iso(self.until),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncReport:
        return cls(
            sync_id=data["sync_id"],
            outcome=SyncOutcome(data["outcome"]),
            start_time=datetime.fromisoformat(data["start_time"]),
            end_time=_time_or_none(data["end_time"]),
            **{name: data[name] for name in COUNTERS},
            skipped=tuple(Skipped(**s) for s in data["skipped"]),
            error=data["error"],
            auth_failure=data["auth_failure"],
            request_id=data["request_id"],
            until=_time_or_none(data["until"]),
        )


def upcast_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report, in place, with every field recorded since it was written at its default
    (version 1 reports lack skipped_at_source and auth_failure, say)."""
    for name, default in SyncReport("", SyncOutcome.RUNNING, datetime.min).to_dict().items():
        report.setdefault(name, default)
    return report


COUNTERS = tuple(SyncReport("", SyncOutcome.RUNNING, datetime.min).counts())


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _time_or_none(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None

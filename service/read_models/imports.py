"""The imports table: one row per live import, for ListImports and the counts per service."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from domain.auto_import import ImportState
from domain.sync_report import SyncReport
from service.read_models.sql import (
    InvalidPageToken,
    SqlView,
    decode_page_token,
    encode_page_token,
    iso,
    query_key,
)
from service.read_models.syncs import report_of_row

IMPORT_COLUMNS = (
    "import_id",
    "account_id",
    "service",
    "display_name",
    "external_account",
    "criteria",
    "list_ids",
    "tags",
    "state",
    "state_reason",
    "create_time",
    "update_time",
    "version",
    "last_sync",
    "last_sync_start",
)


@dataclass(frozen=True)
class ImportRow:
    import_id: str
    account_id: str
    service: str
    display_name: str
    external_account: str
    criteria: dict[str, Any]
    list_ids: list[str]
    tags: list[str]
    state: str
    state_reason: str
    create_time: datetime
    update_time: datetime
    version: int  # of the last change of settings or state: the etag
    last_sync: SyncReport | None = None
    running_sync: SyncReport | None = None  # known to the aggregate only
    # When the last sync began, the one under way included; None if it never synced.
    last_sync_start: datetime | None = None

    @classmethod
    def from_db(cls, row: dict[str, Any]) -> ImportRow:
        return cls(
            import_id=row["import_id"],
            account_id=row["account_id"],
            service=row["service"],
            display_name=row["display_name"],
            external_account=row["external_account"],
            criteria=json.loads(row["criteria"]),
            list_ids=json.loads(row["list_ids"]),
            tags=json.loads(row["tags"]),
            state=row["state"],
            state_reason=row["state_reason"],
            create_time=datetime.fromisoformat(row["create_time"]),
            update_time=datetime.fromisoformat(row["update_time"]),
            version=int(row["version"]),
            last_sync=report_of_row(row["last_sync"]) if row["last_sync"] else None,
            last_sync_start=_time_or_none(row["last_sync_start"]),
        )


@dataclass(frozen=True)
class ImportsPage:
    rows: list[ImportRow]
    next_page_token: str


@dataclass(frozen=True)
class DueImport:
    account_id: str
    import_id: str
    create_time: datetime
    last_sync_start: datetime | None


@dataclass(frozen=True)
class DuePage:
    rows: list[DueImport]
    next_page_token: str


class ImportsTable(SqlView):
    ddl: ClassVar[tuple[str, ...]] = (
        "CREATE TABLE IF NOT EXISTS {t}imports ("
        " import_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, service TEXT NOT NULL,"
        " display_name TEXT NOT NULL, external_account TEXT NOT NULL, criteria TEXT NOT NULL,"
        " list_ids TEXT NOT NULL, tags TEXT NOT NULL, state TEXT NOT NULL,"
        " state_reason TEXT NOT NULL, create_time TEXT NOT NULL, update_time TEXT NOT NULL,"
        " version BIGINT NOT NULL, last_sync TEXT, last_sync_start TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {p}imports_by_account"
        " ON {t}imports (account_id, create_time, import_id)",
        # The scheduler's due imports: "" (never synced) sorts first, then the most overdue.
        "CREATE INDEX IF NOT EXISTS {p}imports_by_last_sync_start"
        " ON {t}imports (state, last_sync_start, import_id)",
    )

    def get_import(self, account_id: str, import_id: str) -> ImportRow | None:
        rows = self.fetch(
            f"SELECT {', '.join(IMPORT_COLUMNS)} FROM {{t}}imports"
            " WHERE import_id = :import_id AND account_id = :account_id",
            {"import_id": import_id, "account_id": account_id},
        )
        return ImportRow.from_db(rows[0]) if rows else None

    def list_imports(
        self, account_id: str, service: str, page_size: int, page_token: str
    ) -> ImportsPage:
        query = query_key("imports", account_id, service)
        conditions = ["account_id = :account_id"]
        params: dict[str, Any] = {"account_id": account_id, "limit": page_size + 1}
        if service:
            conditions.append("service = :service")
            params["service"] = service
        if page_token:
            params["after_time"], params["after_id"] = decode_page_token(page_token, query, 2)
            conditions.append(
                "(create_time > :after_time"
                " OR (create_time = :after_time AND import_id > :after_id))"
            )
        rows = self.fetch(
            f"SELECT {', '.join(IMPORT_COLUMNS)} FROM {{t}}imports"
            f" WHERE {' AND '.join(conditions)} ORDER BY create_time, import_id LIMIT :limit",
            params,
        )
        token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            token = encode_page_token([last["create_time"], last["import_id"]], query)
        return ImportsPage([ImportRow.from_db(r) for r in rows[:page_size]], token)

    def count_by_service(self, account_id: str) -> dict[str, int]:
        rows = self.fetch(
            "SELECT service, COUNT(*) AS n FROM {t}imports WHERE account_id = :account_id"
            " GROUP BY service",
            {"account_id": account_id},
        )
        return {r["service"]: int(r["n"]) for r in rows}

    def list_due(self, cutoff: datetime | None, page_size: int, page_token: str) -> DuePage:
        """Active imports that never synced or whose last sync began at or before `cutoff` (a
        due time minus the interval), never synced first, then the longest ago. The page token
        carries the cutoff: None takes it from the token, else it must match."""
        params: dict[str, Any] = {"state": ImportState.ACTIVE.value, "limit": page_size + 1}
        conditions = ["state = :state", "last_sync_start <= :cutoff"]
        if page_token:
            token_cutoff, params["after_start"], params["after_id"] = decode_page_token(
                page_token, query_key("due"), 3
            )
            if cutoff is not None and iso(cutoff) != token_cutoff:
                raise InvalidPageToken("belongs to a list due at another time: start again")
            params["cutoff"] = token_cutoff
            conditions.append(
                "(last_sync_start > :after_start"
                " OR (last_sync_start = :after_start AND import_id > :after_id))"
            )
        elif cutoff is None:
            raise InvalidPageToken("no page token, and no time the imports are due at")
        else:
            params["cutoff"] = iso(cutoff)
        rows = self.fetch(
            "SELECT import_id, account_id, create_time, last_sync_start FROM {t}imports"
            f" WHERE {' AND '.join(conditions)} ORDER BY last_sync_start, import_id LIMIT :limit",
            params,
        )
        token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            token = encode_page_token(
                [params["cutoff"], last["last_sync_start"], last["import_id"]], query_key("due")
            )
        due = [
            DueImport(
                account_id=r["account_id"],
                import_id=r["import_id"],
                create_time=datetime.fromisoformat(r["create_time"]),
                last_sync_start=_time_or_none(r["last_sync_start"]),
            )
            for r in rows[:page_size]
        ]
        return DuePage(due, token)


def _time_or_none(text: str) -> datetime | None:
    """A time column that is empty ("", sorting first) until there is a time."""
    return datetime.fromisoformat(text) if text else None

"""The imports table: one row per live import, for ListImports and the counts per service."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from service.read_models.sql import (
    SqlView,
    decode_page_token,
    encode_page_token,
    query_key,
)

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
    last_sync: dict[str, Any] | None = None
    running_sync: dict[str, Any] | None = None  # known to the aggregate only

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
            last_sync=json.loads(row["last_sync"]) if row["last_sync"] else None,
        )


@dataclass(frozen=True)
class ImportsPage:
    rows: list[ImportRow]
    next_page_token: str


class ImportsTable(SqlView):
    ddl: ClassVar[tuple[str, ...]] = (
        "CREATE TABLE IF NOT EXISTS {t}imports ("
        " import_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, service TEXT NOT NULL,"
        " display_name TEXT NOT NULL, external_account TEXT NOT NULL, criteria TEXT NOT NULL,"
        " list_ids TEXT NOT NULL, tags TEXT NOT NULL, state TEXT NOT NULL,"
        " state_reason TEXT NOT NULL, create_time TEXT NOT NULL, update_time TEXT NOT NULL,"
        " version BIGINT NOT NULL, last_sync TEXT)",
        "CREATE INDEX IF NOT EXISTS {p}imports_by_account"
        " ON {t}imports (account_id, create_time, import_id)",
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

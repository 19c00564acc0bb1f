"""The fields table: the custom fields imports created, one per connector field per account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from service.read_models.sql import SqlView


@dataclass(frozen=True)
class FieldRow:
    field_id: str
    account_id: str
    service: str
    key: str
    title: str
    personalization_tag: str
    create_time: datetime


class FieldsTable(SqlView):
    ddl: ClassVar[tuple[str, ...]] = (
        "CREATE TABLE IF NOT EXISTS {t}fields ("
        " field_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, service TEXT NOT NULL,"
        " key TEXT NOT NULL, title TEXT NOT NULL, personalization_tag TEXT NOT NULL,"
        " create_time TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {p}fields_by_account ON {t}fields (account_id, service)",
    )

    def list_fields(self, account_id: str, service: str) -> list[FieldRow]:
        params: dict[str, Any] = {"account_id": account_id}
        condition = "account_id = :account_id"
        if service:
            condition += " AND service = :service"
            params["service"] = service
        rows = self.fetch(
            "SELECT field_id, account_id, service, key, title, personalization_tag, create_time"
            f" FROM {{t}}fields WHERE {condition} ORDER BY service, title",
            params,
        )
        return [
            FieldRow(**{**r, "create_time": datetime.fromisoformat(r["create_time"])}) for r in rows
        ]

"""The contacts table: the account's contacts as their Contact aggregates left them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from service.read_models.sql import SqlView, decode_page_token, encode_page_token, query_key

CONTACT_COLUMNS = (
    "contact_id",
    "account_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "status",
    "fields",
    "list_ids",
    "tags",
    "sources",
    "create_time",
    "update_time",
)
JSON_COLUMNS = ("fields", "list_ids", "tags", "sources")


@dataclass(frozen=True)
class ContactRow:
    contact_id: str
    account_id: str
    email: str
    first_name: str
    last_name: str
    phone: str
    status: str
    fields: dict[str, str]
    list_ids: list[str]
    tags: list[str]
    sources: list[str]
    create_time: datetime
    update_time: datetime

    @classmethod
    def from_db(cls, row: dict[str, Any]) -> ContactRow:
        values = {c: row[c] for c in CONTACT_COLUMNS}
        for column in JSON_COLUMNS:
            values[column] = json.loads(values[column])
        for column in ("create_time", "update_time"):
            values[column] = datetime.fromisoformat(values[column])
        return cls(**values)


@dataclass(frozen=True)
class ContactsPage:
    rows: list[ContactRow]
    next_page_token: str
    total_size: int


class ContactsTable(SqlView):
    ddl: ClassVar[tuple[str, ...]] = (
        "CREATE TABLE IF NOT EXISTS {t}contacts ("
        " contact_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, email TEXT NOT NULL,"
        " first_name TEXT NOT NULL, last_name TEXT NOT NULL, phone TEXT NOT NULL,"
        " status TEXT NOT NULL, fields TEXT NOT NULL, list_ids TEXT NOT NULL,"
        " tags TEXT NOT NULL, sources TEXT NOT NULL, create_time TEXT NOT NULL,"
        " update_time TEXT NOT NULL)",
        "CREATE UNIQUE INDEX IF NOT EXISTS {p}contacts_by_email ON {t}contacts (account_id, email)",
    )

    def get_contact(self, account_id: str, email: str) -> ContactRow | None:
        rows = self.fetch(
            f"SELECT {', '.join(CONTACT_COLUMNS)} FROM {{t}}contacts"
            " WHERE account_id = :account_id AND email = :email",
            {"account_id": account_id, "email": email},
        )
        return ContactRow.from_db(rows[0]) if rows else None

    def list_contacts(self, account_id: str, page_size: int, page_token: str) -> ContactsPage:
        query = query_key("contacts", account_id)
        params: dict[str, Any] = {"account_id": account_id, "limit": page_size + 1}
        after = ""
        if page_token:
            (params["after"],) = decode_page_token(page_token, query, 1)
            after = " AND email > :after"
        rows = self.fetch(
            f"SELECT {', '.join(CONTACT_COLUMNS)} FROM {{t}}contacts"
            f" WHERE account_id = :account_id{after} ORDER BY email LIMIT :limit",
            params,
        )
        token = ""
        if len(rows) > page_size:
            token = encode_page_token([rows[page_size - 1]["email"]], query)
        total = self.fetch(
            "SELECT COUNT(*) AS n FROM {t}contacts WHERE account_id = :account_id",
            {"account_id": account_id},
        )[0]["n"]
        return ContactsPage([ContactRow.from_db(r) for r in rows[:page_size]], token, int(total))

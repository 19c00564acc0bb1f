"""The imports read model: one row per live import, for ListImports and the counts per service."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteTrackingRecorder

from domain.auto_import import AutoImport, ImportState
from service.read_models.sql import SqlView, Statement

_COLUMNS = (
    "import_id, account_id, service, display_name, external_account, criteria, list_ids, tags, "
    "state, state_reason, create_time, update_time, version"
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
    version: int

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
        )


class InvalidPageToken(ValueError):
    pass


@dataclass(frozen=True)
class ImportsPage:
    rows: list[ImportRow]
    next_page_token: str


class ImportsView(SqlView):
    ddl = (
        "CREATE TABLE IF NOT EXISTS {t}imports ("
        " import_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, service TEXT NOT NULL,"
        " display_name TEXT NOT NULL, external_account TEXT NOT NULL, criteria TEXT NOT NULL,"
        " list_ids TEXT NOT NULL, tags TEXT NOT NULL, state TEXT NOT NULL,"
        " state_reason TEXT NOT NULL, create_time TEXT NOT NULL, update_time TEXT NOT NULL,"
        " version BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {p}imports_by_account"
        " ON {t}imports (account_id, create_time, import_id)",
    )

    # -- writes, one per event, each with its tracking record -------------------------------
    def insert_import(self, tracking: Tracking, row: dict[str, Any]) -> None:
        names = ", ".join(f":{c.strip()}" for c in _COLUMNS.split(","))
        self.record(tracking, [(f"INSERT INTO {{t}}imports ({_COLUMNS}) VALUES ({names})", row)])

    def update_import(self, tracking: Tracking, import_id: str, values: dict[str, Any]) -> None:
        assignments = ", ".join(f"{column} = :{column}" for column in values)
        statement: Statement = (
            f"UPDATE {{t}}imports SET {assignments} WHERE import_id = :import_id",
            {**values, "import_id": import_id},
        )
        self.record(tracking, [statement])

    def delete_import(self, tracking: Tracking, import_id: str) -> None:
        statement = (
            "DELETE FROM {t}imports WHERE import_id = :import_id",
            {"import_id": import_id},
        )
        self.record(tracking, [statement])

    # -- reads ------------------------------------------------------------------------------
    def list_imports(
        self, account_id: str, service: str, page_size: int, page_token: str
    ) -> ImportsPage:
        query_key = _query_key(account_id, service)
        after = _decode_token(page_token, query_key) if page_token else None
        conditions = ["account_id = :account_id"]
        params: dict[str, Any] = {"account_id": account_id, "limit": page_size + 1}
        if service:
            conditions.append("service = :service")
            params["service"] = service
        if after:
            conditions.append(
                "(create_time > :after_time"
                " OR (create_time = :after_time AND import_id > :after_id))"
            )
            params["after_time"], params["after_id"] = after
        rows = self.fetch(
            f"SELECT {_COLUMNS} FROM {{t}}imports WHERE {' AND '.join(conditions)}"
            " ORDER BY create_time, import_id LIMIT :limit",
            params,
        )
        page = [ImportRow.from_db(r) for r in rows[:page_size]]
        token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            token = _encode_token([last["create_time"], last["import_id"]], query_key)
        return ImportsPage(page, token)

    def count_by_service(self, account_id: str) -> dict[str, int]:
        rows = self.fetch(
            "SELECT service, COUNT(*) AS n FROM {t}imports WHERE account_id = :account_id"
            " GROUP BY service",
            {"account_id": account_id},
        )
        return {r["service"]: int(r["n"]) for r in rows}


class SQLiteImportsView(ImportsView, SQLiteTrackingRecorder):
    pass


class PostgresImportsView(ImportsView, PostgresTrackingRecorder):
    pass


class ImportsProjection(Projection[ImportsView]):
    name = "imports_view"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Events that do not change the view still advance its position, so that a reader
        waiting for the latest event of the application is not kept waiting."""
        self.view.insert_tracking(tracking)

    @process_event.register
    def _created(self, e: AutoImport.Created, tracking: Tracking) -> None:
        self.view.insert_import(
            tracking,
            {
                "import_id": str(e.originator_id),
                "account_id": e.account_id,
                "service": e.service,
                "display_name": e.display_name,
                "external_account": e.external_account,
                "criteria": json.dumps(e.criteria),
                "list_ids": json.dumps(e.list_ids),
                "tags": json.dumps(e.tags),
                "state": ImportState.ACTIVE.value,
                "state_reason": "",
                "create_time": _time(e.timestamp),
                "update_time": _time(e.timestamp),
                "version": e.originator_version,
            },
        )

    @process_event.register
    def _updated(self, e: AutoImport.Updated, tracking: Tracking) -> None:
        changes = {
            name: (json.dumps(value) if name in ("criteria", "list_ids", "tags") else value)
            for name, value in e.changes.items()
        }
        self._changed(e, tracking, changes)

    @process_event.register
    def _credentials_rotated(self, e: AutoImport.CredentialsRotated, tracking: Tracking) -> None:
        # The aggregate reactivates an import that needed re-authentication; mirror that.
        row = self.view.fetch(
            "SELECT state FROM {t}imports WHERE import_id = :import_id",
            {"import_id": str(e.originator_id)},
        )
        changes: dict[str, Any] = {}
        if row and row[0]["state"] == ImportState.NEEDS_REAUTH.value:
            changes = {"state": ImportState.ACTIVE.value, "state_reason": ""}
        self._changed(e, tracking, changes)

    @process_event.register
    def _paused(self, e: AutoImport.Paused, tracking: Tracking) -> None:
        self._changed(e, tracking, {"state": ImportState.PAUSED.value, "state_reason": ""})

    @process_event.register
    def _resumed(self, e: AutoImport.Resumed, tracking: Tracking) -> None:
        self._changed(e, tracking, {"state": ImportState.ACTIVE.value})

    @process_event.register
    def _deleted(self, e: AutoImport.Deleted, tracking: Tracking) -> None:
        self.view.delete_import(tracking, str(e.originator_id))

    def _changed(self, e: Any, tracking: Tracking, changes: dict[str, Any]) -> None:
        values = {**changes, "update_time": _time(e.timestamp), "version": e.originator_version}
        self.view.update_import(tracking, str(e.originator_id), values)


VIEW_CLASSES = {
    "eventsourcing.sqlite": SQLiteImportsView,
    "eventsourcing.postgres": PostgresImportsView,
}


def _time(t: datetime) -> str:
    # Fixed width, so that text order is time order.
    return t.isoformat(timespec="microseconds")


def _query_key(account_id: str, service: str) -> str:
    return hashlib.sha256(f"{account_id}\0{service}".encode()).hexdigest()[:16]


def _encode_token(after: list[str], query_key: str) -> str:
    raw = json.dumps({"after": after, "query": query_key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, query_key: str) -> tuple[str, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, key = data["after"], data["query"]
        create_time, import_id = str(after[0]), str(after[1])
    except (ValueError, KeyError, TypeError, IndexError):
        raise InvalidPageToken("is not a page token this service issued") from None
    if key != query_key:
        raise InvalidPageToken("belongs to a list with other filters: start again without it")
    return create_time, import_id

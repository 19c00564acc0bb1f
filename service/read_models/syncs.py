"""The syncs table: the report of every finished sync, for ListSyncs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from domain.sync_report import SyncReport, upcast_report
from service.read_models.sql import SqlView, decode_page_token, encode_page_token, query_key


def report_of_row(text: str) -> SyncReport:
    """A report as a row keeps it (the event's, as recorded): a row written before a report
    field existed lacks it, as the event did."""
    return SyncReport.from_dict(upcast_report(json.loads(text)))


@dataclass(frozen=True)
class SyncsPage:
    reports: list[SyncReport]
    next_page_token: str


class SyncsTable(SqlView):
    ddl: ClassVar[tuple[str, ...]] = (
        "CREATE TABLE IF NOT EXISTS {t}syncs ("
        " sync_id TEXT PRIMARY KEY, import_id TEXT NOT NULL, account_id TEXT NOT NULL,"
        " start_time TEXT NOT NULL, report TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS {p}syncs_by_import ON {t}syncs (import_id, start_time)",
    )

    def list_syncs(self, import_id: str, page_size: int, page_token: str) -> SyncsPage:
        """Newest first."""
        query = query_key("syncs", import_id)
        params: dict[str, Any] = {"import_id": import_id, "limit": page_size + 1}
        before = ""
        if page_token:
            params["before_time"], params["before_id"] = decode_page_token(page_token, query, 2)
            before = (
                " AND (start_time < :before_time"
                " OR (start_time = :before_time AND sync_id < :before_id))"
            )
        rows = self.fetch(
            "SELECT sync_id, start_time, report FROM {t}syncs WHERE import_id = :import_id"
            f"{before} ORDER BY start_time DESC, sync_id DESC LIMIT :limit",
            params,
        )
        token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            token = encode_page_token([last["start_time"], last["sync_id"]], query)
        return SyncsPage([report_of_row(r["report"]) for r in rows[:page_size]], token)

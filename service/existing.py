"""Which of many aggregates exist, in one query rather than one load each.

A batch of a CSV import checks hundreds of contacts, most of them new on a first import; loading
each (a snapshot query and an events query per id) would cost two round trips per row. This asks
the event store's table once for the ids that have events. Only ids are read (they are stored in
clear; the events' state is encrypted), and only to skip loading what does not exist: a contact
created meanwhile makes the batch's save fail on its id, and the batch is decided again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Recorder
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder
from psycopg.sql import SQL, Identifier

from domain.contact import Contact, InvalidEmail, normalize_email


def existing_ids(recorder: Recorder, ids: Collection[UUID]) -> set[UUID]:
    """The ids among `ids` that have stored events. With a recorder it does not know, every id
    (the caller then loads each, as it would without this)."""
    if not ids:
        return set()
    if isinstance(recorder, PostgresAggregateRecorder):
        statement = SQL(
            "SELECT DISTINCT originator_id FROM {schema}.{table} WHERE originator_id = ANY(%s)"
        ).format(
            schema=Identifier(recorder.datastore.schema),
            table=Identifier(recorder.events_table_name),
        )
        as_text = recorder.datastore.originator_id_type == "text"
        values = [str(i) for i in ids] if as_text else list(ids)
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement, [values])
            return {UUID(str(row["originator_id"])) for row in cursor.fetchall()}
    if isinstance(recorder, SQLiteAggregateRecorder):
        wanted = list(ids)
        found: set[UUID] = set()
        for start in range(0, len(wanted), 500):  # well under SQLite's limit on parameters
            part = wanted[start : start + 500]
            query = (
                f"SELECT DISTINCT originator_id FROM {recorder.events_table_name}"
                f" WHERE originator_id IN ({', '.join('?' * len(part))})"
            )
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(query, [i.hex for i in part])  # as the recorder stores them
                found.update(UUID(str(row["originator_id"])) for row in cursor.fetchall())
        return found
    return set(ids)


def contacts_by_email(
    app: Application[UUID], account_id: str, emails: Iterable[str]
) -> dict[str, Contact | None]:
    """The account's contact, or None, for each valid email given (normalized): one query for
    which exist, then a load of each that does."""
    ids: dict[str, UUID] = {}
    for raw in emails:
        try:
            email = normalize_email(raw) if raw.strip() else ""
        except InvalidEmail:
            continue
        if email:
            ids[email] = Contact.create_id(account_id, email)
    found = existing_ids(app.recorder, ids.values())
    loaded: dict[str, Any] = {
        email: app.repository.get(contact_id) if contact_id in found else None
        for email, contact_id in ids.items()
    }
    return loaded

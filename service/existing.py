"""Many small aggregates (a page's contacts, its custom fields) in one query rather than one or
two each.

A sync page or a CSV batch checks hundreds of contacts and a few fields. Loading each through
the repository costs a snapshot query and an events query per aggregate (most contacts do not
exist on a first import, and a cached one still costs a query to fast-forward). This reads the
events of all of them from the event store's table in one query, and builds each aggregate from
its events, as the repository would: those with no events do not exist. Snapshots are skipped
(a contact or a field has a few events; every event is kept). One created or changed after the
query makes the batch's save fail on its version, and the batch is decided again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder
from psycopg.sql import SQL, Identifier

from domain.contact import Contact, InvalidEmail, normalize_email

_SQLITE_PARAMETERS = 500  # ids per query, well under SQLite's limit on parameters


def stored_events_of(
    app: Application[UUID], ids: Collection[UUID]
) -> dict[UUID, list[StoredEvent]] | None:
    """The stored events of each id that has any, in version order; None with a recorder this
    does not know (the caller then loads each through the repository)."""
    recorder = app.recorder
    found: dict[UUID, list[StoredEvent]] = defaultdict(list)
    if not ids:
        return found
    if isinstance(recorder, PostgresAggregateRecorder):
        statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {schema}.{table}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(
            schema=Identifier(recorder.datastore.schema),
            table=Identifier(recorder.events_table_name),
        )
        as_text = recorder.datastore.originator_id_type == "text"
        values = [str(i) for i in ids] if as_text else list(ids)
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement, [values])
            rows = cursor.fetchall()
    elif isinstance(recorder, SQLiteAggregateRecorder):
        wanted = list(ids)
        rows = []
        for start in range(0, len(wanted), _SQLITE_PARAMETERS):
            part = wanted[start : start + _SQLITE_PARAMETERS]
            query = (
                "SELECT originator_id, originator_version, topic, state"
                f" FROM {recorder.events_table_name}"
                f" WHERE originator_id IN ({', '.join('?' * len(part))})"
                " ORDER BY originator_id, originator_version"
            )
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(query, [i.hex for i in part])  # as the recorder stores them
                rows += cursor.fetchall()
    else:
        return None
    for row in rows:
        originator_id = UUID(str(row["originator_id"]))
        found[originator_id].append(
            StoredEvent(
                originator_id=originator_id,
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
        )
    return found


def aggregates_of(app: Application[UUID], ids: Collection[UUID]) -> dict[UUID, Any]:
    """The aggregate at each id, or None where there is none."""
    stored = stored_events_of(app, ids)
    if stored is None:
        return {i: _load(app, i) for i in ids}
    to_domain_event = app.mapper.to_domain_event
    return {
        i: project_aggregate(None, [to_domain_event(e) for e in stored[i]]) if i in stored else None
        for i in ids
    }


def contacts_by_email(
    app: Application[UUID], account_id: str, emails: Iterable[str]
) -> dict[str, Contact | None]:
    """The account's contact, or None, for each valid email given (normalized)."""
    ids: dict[str, UUID] = {}
    for raw in emails:
        try:
            email = normalize_email(raw) if raw.strip() else ""
        except InvalidEmail:
            continue
        if email:
            ids[email] = Contact.create_id(account_id, email)
    found = aggregates_of(app, ids.values())
    return {email: found[contact_id] for email, contact_id in ids.items()}


def _load(app: Application[UUID], aggregate_id: UUID) -> Any:
    try:
        return app.repository.get(aggregate_id)
    except AggregateNotFoundError:
        return None

"""Opening the stores: the application's event store and the read models' tables."""

from __future__ import annotations

import psycopg
from eventsourcing.persistence import MapperDeserialisationError
from psycopg import sql

from service.application import AutoImports
from service.config import ConfigError, Settings
from service.leases import lock_key
from service.read_models import PROJECTIONS, open_view
from service.sqlite_pages import limit_page_cache


def open_application(settings: Settings) -> AutoImports:
    prepare_store(settings)
    env = settings.store_env("events")
    limit_page_cache(env)  # before any connection opens (service/sqlite_pages.py)
    app = AutoImports(env)
    check_cipher_key(app)
    return app


def prepare_store(settings: Settings) -> None:
    """Creates the PostgreSQL schema and every table, one process at a time.

    Concurrent CREATE TABLE IF NOT EXISTS of the same table fails in PostgreSQL (both insert its
    row type), and replicas and projectors start together; an advisory lock serialises them.
    Every later construction of a store on PostgreSQL creates nothing (Settings.store_env).
    """
    if not settings.uses_postgres:
        return
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        schema = settings.database_schema
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        key = lock_key(f"autoimport-ddl/{schema}")
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            AutoImports(settings.store_env("events", create_tables=True)).close()
            for projection, view_classes in PROJECTIONS:
                env = settings.store_env(projection.name, create_tables=True)
                view = open_view(projection, view_classes, env)
                view.datastore.close()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def check_cipher_key(app: AutoImports) -> None:
    """Refuses a key that cannot read the store: with replicas on one database, a replica that
    generated a key of its own would otherwise fail on every event the others wrote."""
    first = app.recorder.select_notifications(start=1, limit=1)
    try:
        for notification in first:
            app.mapper.to_domain_event(notification)
    except MapperDeserialisationError:
        app.close()
        raise ConfigError(
            "the event store was written with another cipher key: set AUTOIMPORT_CIPHER_KEY to "
            "that key (every replica on one database needs the same one)"
        ) from None

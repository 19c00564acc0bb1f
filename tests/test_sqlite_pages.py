"""service/sqlite_pages.py: each SQLite store's connections open with a small page cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.config import Settings
from service.read_models import ReadModels
from service.sqlite_pages import CACHE_PAGES
from service.stores import open_application


@pytest.mark.parametrize("store_env", ["sqlite"], indirect=True)
def test_every_store_file_gives_new_connections_the_small_page_cache(store_env: dict[str, str]):
    settings = Settings.from_env(store_env)
    app = open_application(settings)
    read_models = ReadModels(app, settings.store_env, secret=settings.cipher_key)
    try:
        files = sorted(Path(settings.data_dir).glob("*.sqlite"))
        assert [f.name for f in files] == ["account_views_v2.sqlite", "events.sqlite"]
        for file in files:
            connection = sqlite3.connect(file)  # as eventsourcing opens its own: no PRAGMA
            assert connection.execute("PRAGMA cache_size").fetchone() == (CACHE_PAGES,)
            connection.close()
        # And the connections eventsourcing opened first, to create the tables, kept in its pools.
        for datastore in (app.recorder.datastore, read_models.views.datastore):  # type: ignore[attr-defined]
            with datastore.transaction(commit=False) as cursor:
                cursor.execute("PRAGMA cache_size")
                assert tuple(cursor.fetchone()) == (CACHE_PAGES,)
    finally:
        read_models.close()
        app.close()

"""The store failing under a call: the SQLite file locked by another process (a backup tool, a
second server on one file) gets UNAVAILABLE saying so, and nothing half-written."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from eventsourcing.persistence import OperationalError

from service.api.status import status_for
from service.application import AutoImports
from service.config import Settings
from service.errors import NotFound
from service.stores import open_application
from tests.support import ROOT


def test_a_store_locked_by_another_process_is_unavailable_and_nothing_is_written(tmp_path: Path):
    settings = Settings.from_env({"AUTOIMPORT_DATA_DIR": str(tmp_path)})
    open_application(settings).close()  # the tables
    app = AutoImports({**settings.store_env("events"), "SQLITE_LOCK_TIMEOUT": "1"})
    holder = sqlite3.connect(tmp_path / "events.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OperationalError) as raised:
            app.upsert_account("acme", "lite", 10, actor="admin")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    status = status_for(raised.value)
    assert status.code is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert status.details == (  # type: ignore[attr-defined]
        "the store cannot be used just now (database is locked): retry shortly"
    )
    with pytest.raises(NotFound):
        app.get_account("acme")
    assert app.upsert_account("acme", "lite", 10, actor="admin").contact_limit == 10
    app.close()


@pytest.mark.parametrize("command", ["serve", "projector"])
def test_a_store_that_cannot_be_reached_at_start_is_one_line_not_a_traceback(
    command: str, tmp_path: Path
):
    """Found restarting PostgreSQL under a server: its projector process, started again while
    the database was down, printed a traceback (its server starts it again: it recovered)."""
    env = {
        **os.environ,
        "AUTOIMPORT_DATA_DIR": str(tmp_path),
        "AUTOIMPORT_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/test",  # nothing listens
        "AUTOIMPORT_METRICS_LISTEN": "off",
    }
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert "autoimport: the store cannot be reached (connection failed" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout

"""The store failing under a call: the SQLite file locked by another process (a backup tool, a
second server on one file) gets UNAVAILABLE saying so; the disk full gets RESOURCE_EXHAUSTED
saying so; either way nothing is half-written, and the work finishes once the store can be used."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from eventsourcing.persistence import OperationalError

from autoimport.v1 import imports_pb2 as pb
from service.api.status import status_for
from service.application import AutoImports
from service.config import Settings
from service.errors import NotFound
from service.stores import open_application
from tests.invariants import Expected, broken_promises
from tests.scripted_server import write_source
from tests.support import ROOT, ServerProcess, all_contacts, new_account
from tests.test_api_csv import chunked, upload
from tests.test_api_sync import SCRIPTED, contacts_of


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


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path`: a disk that can be filled (needs root)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem to fill: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(directory: Path) -> Path:
    """Writes a file until the filesystem has no byte left; returns it (remove it to free)."""
    filler = directory / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):  # ENOSPC: full
        while True:
            f.write(bytes(64 * 1024))
            f.flush()
    return filler


def test_a_full_disk_is_resource_exhausted_saying_so_and_loses_nothing(tmp_path: Path):
    """SQLite on a disk that fills up under a sync and an upload: each is refused with
    RESOURCE_EXHAUSTED naming the full disk (not "retry shortly": someone must free space), reads
    go on, nothing of the refused calls is stored; once space is freed, the same calls (the
    upload with its request id) finish, and every promise holds."""
    sources = tmp_path / "sources"
    sources.mkdir()
    with small_filesystem(tmp_path / "data", "32m") as data:
        env = {
            "AUTOIMPORT_DATA_DIR": str(data),
            "AUTOIMPORT_DATABASE_URL": "",
            "AUTOIMPORT_TEST_SOURCES": str(sources),
        }
        with ServerProcess(env, SCRIPTED) as server, server.client(server.admin_token) as admin:
            account_id = new_account(admin)
            first = [f"first{n:04d}@example.com" for n in range(1000)]
            upload(admin, account_id, [("email\n" + "".join(f"{e}\n" for e in first)).encode()])
            contacts = contacts_of(400, prefix="s")
            write_source(sources, "store-full", contacts, page_size=100)
            name = admin.imports.CreateImport(
                pb.CreateImportRequest(
                    account_id=account_id,
                    auto_import=pb.AutoImport(
                        service="shopify",
                        external_account="store-full",
                        credentials=pb.Credentials(access_token="t"),
                    ),
                )
            ).name
            rows = [f"second{n:05d}@example.com" for n in range(3000)]
            data_of_upload = ("email,first_name\n" + "".join(f"{e},Csv\n" for e in rows)).encode()
            request_id = str(uuid.uuid4())
            held = {c.email for c in all_contacts(admin, account_id)}

            filler = fill(data)
            refused = []
            for call in (
                lambda: admin.imports.TriggerSync(pb.TriggerSyncRequest(name=name), timeout=60),
                lambda: upload(
                    admin, account_id, chunked(data_of_upload, 16 * 1024), request_id=request_id
                ),
            ):
                with pytest.raises(grpc.RpcError) as raised:
                    call()
                refused.append((raised.value.code(), raised.value.details()))
            assert (
                refused
                == [
                    (
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        "the store's disk is full (database or disk is full): nothing of this call "
                        "was written; free space on it, then retry",
                    )
                ]
                * 2
            )
            assert {c.email for c in all_contacts(admin, account_id)} == held  # reads go on

            filler.unlink()
            upload(admin, account_id, chunked(data_of_upload, 16 * 1024), request_id=request_id)
            report = admin.imports.TriggerSync(pb.TriggerSyncRequest(name=name), timeout=60)
            assert report.outcome == pb.SyncReport.COMPLETED
            every = {*first, *rows, *(c["email"] for c in contacts)}
            broken = broken_promises(
                Settings.from_env(server.env), admin, [Expected(account_id, every)]
            )

    assert broken == []

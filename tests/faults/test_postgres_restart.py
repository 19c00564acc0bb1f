"""PostgreSQL restarted under a sync and a CSV upload: meanwhile calls answer UNAVAILABLE (never
INTERNAL), the server reconnects by itself, and once the work is retried every promise of
tests/invariants.py holds.

It restarts the local cluster (`pg_ctlcluster`), so it runs only in `make test-faults`
(AUTOIMPORT_FAULTS=all): other tests of a run share the database.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from autoimport.v1 import imports_pb2 as pb
from service.config import Settings
from tests.conftest import require_postgres
from tests.faults import ALL
from tests.invariants import Expected, broken_promises
from tests.scripted_server import write_source
from tests.support import ServerProcess, new_account, store_env, wait_for
from tests.test_api_csv import chunked, upload
from tests.test_api_sync import SCRIPTED, contacts_of

pytestmark = pytest.mark.postgres
REQUEST_ID = "5f0c3a3e-2b1c-4c55-9d43-6a3f2f5b8e02"  # the upload, retried after the restart


def restart_postgres() -> None:
    (version,) = [p.name for p in Path("/etc/postgresql").iterdir()]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        timeout=60,
    )


@pytest.mark.skipif(not ALL, reason="restarts PostgreSQL: only in make test-faults")
@pytest.mark.skipif(shutil.which("pg_ctlcluster") is None, reason="no local cluster to restart")
def test_postgres_restarted_mid_sync_and_mid_upload_loses_nothing(tmp_path: Path):
    require_postgres()
    sources = tmp_path / "sources"
    sources.mkdir()
    with store_env("postgres", tmp_path) as env:
        env = {**env, "AUTOIMPORT_TEST_SOURCES": str(sources)}
        with ServerProcess(env, SCRIPTED) as server, server.client(server.admin_token) as admin:
            account = new_account(admin)
            contacts = contacts_of(450, prefix="s")
            write_source(sources, "shop-pg", contacts, page_size=50, page_delay=0.1)
            created = admin.imports.CreateImport(
                pb.CreateImportRequest(
                    account_id=account,
                    auto_import=pb.AutoImport(
                        service="shopify",
                        external_account="shop-pg",
                        credentials=pb.Credentials(access_token="t"),
                    ),
                )
            )
            emails = [f"u{n:05d}@example.com" for n in range(3000)]
            data = ("email\n" + "".join(f"{e}\n" for e in emails)).encode()
            codes: list[str] = []

            def record(work: object) -> None:
                try:
                    work()  # type: ignore[operator]
                    codes.append("OK")
                except grpc.RpcError as e:
                    codes.append(e.code().name)

            def sync() -> None:
                admin.imports.TriggerSync(pb.TriggerSyncRequest(name=created.name), timeout=60)

            def send() -> None:
                upload(admin, account, chunked(data, 4096), request_id=REQUEST_ID)

            threads = [threading.Thread(target=record, args=(w,)) for w in (sync, send)]
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            restart_postgres()
            for thread in threads:
                thread.join(timeout=120)

            def answers() -> bool:
                try:
                    admin.imports.GetImport(pb.GetImportRequest(name=created.name))
                except grpc.RpcError as e:
                    codes.append(e.code().name)
                    return False
                return True

            # The server reconnects by itself: reads answer again without restarting it.
            wait_for(answers, bool, timeout=60)
            upload(admin, account, chunked(data, 4096), request_id=REQUEST_ID)
            for _ in range(5):
                report = admin.imports.TriggerSync(
                    pb.TriggerSyncRequest(name=created.name), timeout=60
                )
                if report.outcome == pb.SyncReport.COMPLETED and not report.deferred:
                    break
            log = "".join(server.output)
            present = set(emails) | {c["email"] for c in contacts}
            broken = broken_promises(
                Settings.from_env(server.env), admin, [Expected(account, present=present)]
            )

    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert broken == []
    assert "Traceback" not in log, log[log.find("Traceback") :][:3000]

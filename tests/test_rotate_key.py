"""`autoimport rotate-key`: the whole history re-encrypted under a new key, nothing lost, the old
key no longer reading it; a run that stops part way finishes when run again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.cryptography import AESCipher

from autoimport.v1 import contacts_pb2 as cpb
from autoimport.v1 import contacts_pb2_grpc
from autoimport.v1 import imports_pb2 as pb
from service import rotate_key
from service.config import Settings
from service.stores import open_application
from tests.conftest import STORES
from tests.support import ROOT, Client, ServerProcess
from tests.test_api_csv import upload
from tests.test_api_imports import SECRET, create, shopify_import
from tests.test_processes import set_up_account, stored_bytes


def everything(client: Client, name: str) -> dict[str, Any]:
    """What a caller can read of the account and its import."""
    contacts = contacts_pb2_grpc.ContactServiceStub(client.channel).ListContacts(
        cpb.ListContactsRequest(account_id="acme", page_size=1000)
    )
    history = client.imports.GetImportHistory(pb.GetImportHistoryRequest(name=name))
    return {
        "import": client.imports.GetImport(pb.GetImportRequest(name=name)),
        "history": [(e.version, e.type, e.time.ToJsonString()) for e in history],
        "contacts": sorted(c.email for c in contacts.contacts),
    }


def rotate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "rotate-key"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_rotating_the_key_keeps_every_event_and_the_old_key_reads_none(
    store_env: dict[str, str],
):
    with ServerProcess(store_env) as server, server.client(server.admin_token) as admin:
        set_up_account(admin)
        created = create(admin, "acme", shopify_import())
        for n in range(210):  # past a snapshot (every 200 events), so snapshots rotate too
            admin.imports.UpdateImport(
                pb.UpdateImportRequest(auto_import=pb.AutoImport(name=created.name, tags=[f"t{n}"]))
            )
        upload(admin, "acme", [b"email\n" + b"".join(b"p%d@example.com\n" % i for i in range(30))])
        before = everything(admin, created.name)
        env = server.env
    old_key = Settings.from_env(env).cipher_key
    if "AUTOIMPORT_CIPHER_KEY" in env:  # given by the environment: the new one must be too
        refused = rotate(env)
        assert refused.returncode == 2 and "AUTOIMPORT_NEW_CIPHER_KEY" in refused.stderr
        env = {**env, "AUTOIMPORT_NEW_CIPHER_KEY": AESCipher.create_key(num_bytes=32)}

    done = rotate(env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "rows re-encrypted (0 already were)" in done.stdout
    new_key = (
        env.get("AUTOIMPORT_NEW_CIPHER_KEY")
        or (Path(env["AUTOIMPORT_DATA_DIR"]) / "cipher.key").read_text().strip()
    )
    assert new_key != old_key
    after_env = {**env, "AUTOIMPORT_CIPHER_KEY": new_key} if "AUTOIMPORT_CIPHER_KEY" in env else env
    with ServerProcess(after_env) as server, server.client(server.admin_token) as admin:
        assert everything(admin, created.name) == before
    assert SECRET.encode() not in stored_bytes(env)
    with pytest.raises(Exception, match="another cipher key"):
        open_application(Settings.from_env({**env, "AUTOIMPORT_CIPHER_KEY": old_key}))


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_rotation_that_stopped_part_way_finishes_when_run_again(
    store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    settings = Settings.from_env(store_env)
    app = open_application(settings)
    app.upsert_account("acme", "lite", 100, actor="admin")
    for n in range(1, 8):
        app.upsert_account("acme", "lite", 100 + n, actor="admin")  # 8 events of one account
    app.close()
    new_key = AESCipher.create_key(num_bytes=32)
    monkeypatch.setattr(rotate_key, "BATCH", 3)
    real_update = rotate_key._update
    batches = 0

    def crash_after_two(*args: Any) -> None:
        nonlocal batches
        if batches == 2:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or a crash, between two batches
        batches += 1
        real_update(*args)

    monkeypatch.setattr(rotate_key, "_update", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        rotate_key.rotate(settings, new_key)
    monkeypatch.setattr(rotate_key, "_update", real_update)

    finished = rotate_key.rotate(settings, new_key)

    assert (finished.already, finished.rotated) == (6, 2)
    rotated = open_application(Settings.from_env({**store_env, "AUTOIMPORT_CIPHER_KEY": new_key}))
    assert rotated.get_account("acme").contact_limit == 107
    rotated.close()


def test_a_key_that_reads_nothing_stops_the_rotation_with_nothing_written(tmp_path: Path):
    env = {"AUTOIMPORT_DATA_DIR": str(tmp_path)}
    app = open_application(Settings.from_env(env))
    app.upsert_account("acme", "lite", 100, actor="admin")
    app.close()
    wrong = Settings.from_env({**env, "AUTOIMPORT_CIPHER_KEY": AESCipher.create_key(num_bytes=32)})

    with pytest.raises(Exception, match="encrypted with neither key"):
        rotate_key.rotate(wrong, AESCipher.create_key(num_bytes=32))

    assert open_application(Settings.from_env(env)).get_account("acme").contact_limit == 100

"""CheckConnection and PreviewImport end to end, for every registered source on both stores: a
real server reading the source's emulator, over gRPC, through the same unit as syncs."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoimport.v1 import imports_pb2 as pb
from connectors.base import CONNECTION_CHECKS
from tests.conftest import STORES
from tests.connectors.contract import harness_of, registered_services
from tests.support import ServerProcess, all_contacts, new_account, store_env

SERVICES = registered_services()


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("service", SERVICES, ids=str)
def test_check_and_preview_a_new_and_an_existing_import_saving_nothing(
    service: str, store: str, tmp_path: Path
):
    harness_type = harness_of(service)
    with (
        harness_type(end_to_end=True) as harness,  # type: ignore[call-arg]
        store_env(store, tmp_path) as env,
        ServerProcess({**env, **harness.server_env()}) as server,
        server.client(server.admin_token) as admin,
    ):
        harness.seed(harness.page_size + 20, bad_emails=True)
        account_id = new_account(admin)
        new = harness.import_message()

        checked = admin.imports.CheckConnection(
            pb.CheckConnectionRequest(account_id=account_id, auto_import=new), timeout=60
        )
        assert [f.check for f in checked.findings] == list(CONNECTION_CHECKS)
        assert checked.ok, checked
        wrong = pb.AutoImport()
        wrong.CopyFrom(new)
        wrong.external_account = harness.other_account()
        refused = admin.imports.CheckConnection(
            pb.CheckConnectionRequest(account_id=account_id, auto_import=wrong), timeout=60
        )
        assert not refused.ok and not refused.findings[1].ok, refused

        preview = admin.imports.PreviewImport(
            pb.PreviewImportRequest(account_id=account_id, auto_import=new, sample_size=5),
            timeout=60,
        )
        assert preview.records == harness.page_size and preview.more, preview
        skipped = preview.skipped_missing_email + preview.skipped_invalid_email
        assert skipped > 0 and 0 < preview.would_add <= 500  # the window's budget
        assert preview.would_add + skipped + preview.deferred == preview.records
        assert len(preview.sample) == 5
        assert (
            admin.imports.ListImports(pb.ListImportsRequest(account_id=account_id)).auto_imports
            == []
        )
        assert all_contacts(admin, account_id) == []

        created = harness.create_import(admin, contact_limit=100_000)
        by_name = admin.imports.PreviewImport(
            pb.PreviewImportRequest(name=created.name), timeout=60
        )
        assert (by_name.records, by_name.would_add, by_name.deferred) == (
            preview.records,
            preview.would_add,
            preview.deferred,
        )
        assert admin.imports.CheckConnection(
            pb.CheckConnectionRequest(name=created.name), timeout=60
        ).ok
        history = admin.imports.GetImportHistory(pb.GetImportHistoryRequest(name=created.name))
        assert [e.type for e in history] == ["Created"]  # nothing recorded by either
        server.terminate()
        log = "".join(server.output)
        for secret in harness.secrets():
            assert secret not in log

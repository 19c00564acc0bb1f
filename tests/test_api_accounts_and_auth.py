"""AccountService, and who may call what: admin token, account keys, no key."""

from __future__ import annotations

import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from autoimport.v1 import accounts_pb2 as apb
from autoimport.v1 import imports_pb2 as pb
from tests.support import Client, ServerProcess, rich_status
from tests.test_api_imports import create, error_of, shopify_import, violations


def upsert(client: Client, account_id: str, plan: str = "lite", limit: int = 500) -> apb.Account:
    return client.accounts.UpsertAccount(
        apb.UpsertAccountRequest(
            account=apb.Account(account_id=account_id, plan=plan, contact_limit=limit)
        )
    )


def new_account_id() -> str:
    return f"acct-{uuid.uuid4().hex[:10]}"


def test_upsert_creates_then_changes_the_plan(admin: Client):
    account_id = new_account_id()

    created = upsert(admin, account_id, "lite", 500)
    changed = upsert(admin, account_id, "plus", 5000)

    assert (created.plan, created.contact_limit, created.contact_count) == ("lite", 500, 0)
    assert (changed.plan, changed.contact_limit) == ("plus", 5000)
    fetched = admin.accounts.GetAccount(apb.GetAccountRequest(account_id=account_id))
    assert fetched == changed


def test_invalid_account_fields_are_named(admin: Client):
    error = error_of(upsert, admin, "bad id!", "", 0)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(error)) == {"account.account_id", "account.plan", "account.contact_limit"}


@pytest.mark.parametrize("plan", ["pro\0", "\0"])
def test_a_plan_holding_nul_is_refused_and_the_read_model_advances(admin: Client, plan: str):
    """NUL is refused in a plan as in every other text of a request: PostgreSQL's text cannot
    hold it (plans are kept in events only today, so one stopped nothing; a read model showing
    plans would stall on one)."""
    account_id = new_account_id()
    upsert(admin, account_id)

    for target in (account_id, new_account_id()):  # a change, and a new account
        error = error_of(upsert, admin, target, plan)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "NUL" in violations(error)["account.plan"]
    created = create(admin, account_id, shopify_import())  # the read model still advances:
    listed = admin.imports.ListImports(pb.ListImportsRequest(account_id=account_id))
    assert [i.name for i in listed.auto_imports] == [created.name]
    assert admin.accounts.GetAccount(apb.GetAccountRequest(account_id=account_id)).plan == "lite"


def test_unknown_account_is_not_found(admin: Client):
    error = error_of(admin.accounts.GetAccount, apb.GetAccountRequest(account_id=new_account_id()))

    assert error.code() is grpc.StatusCode.NOT_FOUND


def test_an_account_key_reads_its_own_account_only(
    account_client: Client, account: str, admin: Client
):
    other = new_account_id()
    upsert(admin, other)

    own = account_client.accounts.GetAccount(apb.GetAccountRequest(account_id=account))
    error = error_of(account_client.accounts.GetAccount, apb.GetAccountRequest(account_id=other))

    assert own.account_id == account
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


def test_only_the_admin_upserts_accounts_and_creates_keys(account_client: Client, account: str):
    upsert_error = error_of(upsert, account_client, account, "enterprise", 10**9)
    key_error = error_of(
        account_client.accounts.CreateApiKey, apb.CreateApiKeyRequest(account_id=account)
    )

    assert upsert_error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert key_error.code() is grpc.StatusCode.PERMISSION_DENIED


def test_keys_are_distinct_and_each_identifies_itself_in_history(
    server: ServerProcess, admin: Client, account: str
):
    keys = [
        admin.accounts.CreateApiKey(apb.CreateApiKeyRequest(account_id=account)) for _ in range(2)
    ]
    assert keys[0].key != keys[1].key and keys[0].key_id != keys[1].key_id

    with server.client(keys[1].key) as client:
        created = create(client, account)
        history = list(
            client.imports.GetImportHistory(pb.GetImportHistoryRequest(name=created.name))
        )

    assert history[0].actor == f"key:{keys[1].key_id}"
    assert keys[1].key not in str(history)


def test_another_accounts_key_is_denied_everywhere(
    server: ServerProcess, admin: Client, account: str
):
    theirs = create(admin, account)
    intruder_account = new_account_id()
    upsert(admin, intruder_account)
    key = admin.accounts.CreateApiKey(apb.CreateApiKeyRequest(account_id=intruder_account)).key
    name = theirs.name
    calls = [
        ("CreateImport", pb.CreateImportRequest(account_id=account, auto_import=shopify_import())),
        ("GetImport", pb.GetImportRequest(name=name)),
        ("ListImports", pb.ListImportsRequest(account_id=account)),
        ("UpdateImport", pb.UpdateImportRequest(auto_import=pb.AutoImport(name=name, tags=["x"]))),
        ("DeleteImport", pb.DeleteImportRequest(name=name)),
        ("PauseImport", pb.PauseImportRequest(name=name)),
        ("ResumeImport", pb.ResumeImportRequest(name=name)),
        ("ListServices", pb.ListServicesRequest(account_id=account)),
    ]

    with server.client(key) as intruder:
        for method, request in calls:
            error = error_of(getattr(intruder.imports, method), request)
            assert error.code() is grpc.StatusCode.PERMISSION_DENIED, method
        history_error = error_of(
            lambda: list(intruder.imports.GetImportHistory(pb.GetImportHistoryRequest(name=name)))
        )
        assert history_error.code() is grpc.StatusCode.PERMISSION_DENIED

    after = admin.imports.GetImport(pb.GetImportRequest(name=name))
    assert after == theirs


@pytest.mark.parametrize("token", [None, "", "aik_0000_forged", "adm_wrong", "Basic abc"])
def test_missing_or_unknown_key_is_unauthenticated(server: ServerProcess, account: str, token):
    with server.client(token) as client:
        error = error_of(client.imports.ListImports, pb.ListImportsRequest(account_id=account))
        history_error = error_of(
            lambda: list(client.imports.GetImportHistory(pb.GetImportHistoryRequest(name="x")))
        )

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert history_error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert rich_status(error)["ErrorInfo"].reason == "UNAUTHENTICATED"


def test_health_and_reflection_answer_without_a_token(server: ServerProcess):
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        overall = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        imports = health.Check(
            health_pb2.HealthCheckRequest(service="autoimport.v1.AutoImportService"), timeout=5
        )
        services = ProtoReflectionDescriptorDatabase(channel).get_services()

    assert overall.status == imports.status == health_pb2.HealthCheckResponse.SERVING
    assert {
        "autoimport.v1.AutoImportService",
        "autoimport.v1.AccountService",
        "grpc.health.v1.Health",
    } <= set(services)

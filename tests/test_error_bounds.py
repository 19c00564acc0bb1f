"""Errors stay small whatever the input they quote: a status travels in trailers, which clients
cap at 8 KiB, and a bigger one reaches the caller as RESOURCE_EXHAUSTED instead of its real code.

A probe found a 5,000-character resource name, or 60 invalid list ids, doing exactly that.
"""

from __future__ import annotations

import uuid

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoimport.v1 import imports_pb2 as pb
from service.api.status import MAX_MESSAGE, MAX_VIOLATIONS
from tests.support import Client, rich_status
from tests.test_api_imports import create, error_of, shopify_import

LONG = "é" * 5000  # two bytes each in UTF-8; percent-encoded in grpc-message


def assert_small(error: grpc.RpcError) -> None:
    assert len((error.details() or "").encode()) <= MAX_MESSAGE
    trailers = sum(len(k) + len(v) for k, v in error.trailing_metadata() or ())
    assert trailers < 8192


def test_a_huge_resource_name_gets_its_real_status(
    admin: Client, account: str, account_client: Client
):
    missing = f"accounts/{account}/imports/{uuid.uuid4()}{LONG}"
    elsewhere = f"accounts/{LONG}/imports/{uuid.uuid4()}"

    not_an_import = error_of(admin.imports.GetImport, pb.GetImportRequest(name=missing))
    not_found = error_of(admin.imports.GetImport, pb.GetImportRequest(name=elsewhere))
    denied = error_of(account_client.imports.GetImport, pb.GetImportRequest(name=elsewhere))

    assert not_an_import.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert not_found.code() is grpc.StatusCode.NOT_FOUND
    assert len(rich_status(not_found)["ResourceInfo"].resource_name.encode()) <= 200
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "cannot access account 'éé" in denied.details()
    for error in (not_an_import, not_found, denied):
        assert_small(error)


def test_many_invalid_values_list_the_first_violations_and_count_the_rest(
    account_client: Client, account: str
):
    bad = shopify_import(list_ids=[f"not a list id {LONG[:300]} {n}" for n in range(60)])

    error = error_of(create, account_client, account, bad)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    violations = rich_status(error)["BadRequest"].field_violations
    assert len(violations) == MAX_VIOLATIONS
    assert [v.field for v in violations] == [f"auto_import.list_ids[{n}]" for n in range(10)]
    assert error.details().startswith("60 invalid fields, the first 10: auto_import.list_ids[0]")
    assert_small(error)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(min_size=1000, max_size=20_000),
    field=st.sampled_from(["display_name", "external_account", "tags", "list_ids", "name"]),
)
def test_any_long_input_gets_a_small_status_of_its_real_code(
    account_client: Client, account: str, text: str, field: str
):
    """Long text in any field: the right code, never the trailers' RESOURCE_EXHAUSTED."""
    if field == "name":
        call = account_client.imports.GetImport
        request = pb.GetImportRequest(name=f"accounts/{account}/imports/{text}")
    else:
        value = [text] * 60 if field in ("tags", "list_ids") else text
        call = account_client.imports.CreateImport
        request = pb.CreateImportRequest(
            account_id=account, auto_import=shopify_import(**{field: value})
        )
    try:
        call(request)
    except grpc.RpcError as error:
        assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        assert_small(error)

"""Every free-text field of an import has a size limit: a value over it is INVALID_ARGUMENT
naming the field and the limit, on CreateImport, UpdateImport, CheckConnection and
PreviewImport alike, and nothing is stored (a probe had a 3,000,000-character access token
accepted)."""

from __future__ import annotations

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoimport.v1 import imports_pb2 as pb
from domain.import_settings import MAX_DISPLAY_NAME, MAX_EXTERNAL_ACCOUNT, MAX_TOKEN
from domain.sources import MAX_CRITERIA_TEXT
from tests.support import Client
from tests.test_api_imports import create, error_of, shopify_import, violations

# Each limited field: how to set it on an import, its path in the violation, its limit.
FIELDS = {
    "access_token": (
        lambda v: {"credentials": pb.Credentials(access_token=v)},
        "credentials.access_token",
        MAX_TOKEN,
    ),
    "refresh_token": (
        lambda v: {"credentials": pb.Credentials(access_token="t", refresh_token=v)},
        "credentials.refresh_token",
        MAX_TOKEN,
    ),
    "external_account": (
        lambda v: {"external_account": v},
        "external_account",
        MAX_EXTERNAL_ACCOUNT,
    ),
    "display_name": (lambda v: {"display_name": v}, "display_name", MAX_DISPLAY_NAME),
    "customer_tag": (
        lambda v: {"shopify": pb.ShopifyCriteria(customer_tag=v)},
        "criteria.shopify.customer_tag",
        MAX_CRITERIA_TEXT,
    ),
}


def imports_of(client: Client, account: str) -> int:
    return len(client.imports.ListImports(pb.ListImportsRequest(account_id=account)).auto_imports)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(sorted(FIELDS)), extra=st.integers(min_value=1, max_value=100_000))
def test_any_field_over_its_limit_is_refused_naming_it_and_nothing_is_stored(
    account_client: Client, account: str, field: str, extra: int
):
    set_field, path, limit = FIELDS[field]
    before = imports_of(account_client, account)

    error = error_of(
        create, account_client, account, shopify_import(**set_field("x" * (limit + extra)))
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {limit:,} characters" in violations(error)[f"auto_import.{path}"]
    assert imports_of(account_client, account) == before


def test_a_three_million_character_token_is_refused_by_every_call_that_takes_one(
    account_client: Client, account: str
):
    huge = pb.Credentials(access_token="t" * 3_000_000)
    created = create(account_client, account)
    calls = [
        lambda: create(account_client, account, shopify_import(credentials=huge)),
        lambda: account_client.imports.UpdateImport(
            pb.UpdateImportRequest(auto_import=pb.AutoImport(name=created.name, credentials=huge))
        ),
        lambda: account_client.imports.CheckConnection(
            pb.CheckConnectionRequest(
                account_id=account, auto_import=shopify_import(credentials=huge)
            )
        ),
        lambda: account_client.imports.PreviewImport(
            pb.PreviewImportRequest(
                account_id=account, auto_import=shopify_import(credentials=huge)
            )
        ),
    ]
    for call in calls:
        error = error_of(call)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert any(f.endswith("credentials.access_token") for f in violations(error))
    unchanged = account_client.imports.GetImport(pb.GetImportRequest(name=created.name))
    assert unchanged.etag == created.etag

"""Every free-text field of an import has a size limit (domain/limits.py): a value over it is
INVALID_ARGUMENT naming the field and the limit, on CreateImport, UpdateImport, CheckConnection
and PreviewImport alike, and nothing is stored (a probe had a 3,000,000-character access token
accepted)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoimport.v1 import imports_pb2 as pb
from connectors import SOURCES
from domain.limits import (
    MAX_CRITERIA_TEXT,
    MAX_DISPLAY_NAME,
    MAX_EXTERNAL_ACCOUNT,
    MAX_LABELS,
    MAX_LIST_ID,
    MAX_TAG,
    MAX_TOKEN,
)
from tests.support import Client
from tests.test_api_csv import contact_count, upload
from tests.test_api_imports import SECRET, create, error_of, shopify_import, violations

# A valid import of each service, the base every limited field is set on.
VALID = {
    "shopify": shopify_import(),
    "hubspot": pb.AutoImport(
        service="hubspot", external_account="4242", credentials=pb.Credentials(access_token=SECRET)
    ),
    "google_contacts": pb.AutoImport(
        service="google_contacts",
        external_account="owner@example.com",
        credentials=pb.Credentials(access_token=SECRET, refresh_token="1//refresh"),
    ),
    "mailchimp": pb.AutoImport(
        service="mailchimp",
        external_account="abc123",
        credentials=pb.Credentials(access_token=SECRET),
        mailchimp=pb.MailchimpCriteria(audience_id="a1b2c3"),
    ),
}


def set_criteria(service: str, name: str) -> Callable[[pb.AutoImport, str], None]:
    def setter(message: pb.AutoImport, value: str) -> None:
        setattr(getattr(message, service), name, value)

    return setter


def set_credential(name: str) -> Callable[[pb.AutoImport, str], None]:
    def setter(message: pb.AutoImport, value: str) -> None:
        setattr(message.credentials, name, value)

    return setter


@dataclass(frozen=True)
class Limited:
    """A limited field: the service of the import it is set on, how to set a value, the path of
    its violation, its limit, and whether UpdateImport may change it."""

    service: str
    set: Callable[[pb.AutoImport, str], None]
    path: str
    limit: int
    updatable: bool = True


FIELDS = {
    "access_token": Limited(
        "shopify", set_credential("access_token"), "credentials.access_token", MAX_TOKEN
    ),
    "refresh_token": Limited(
        "google_contacts", set_credential("refresh_token"), "credentials.refresh_token", MAX_TOKEN
    ),
    "external_account": Limited(
        "shopify",
        lambda m, v: setattr(m, "external_account", v),
        "external_account",
        MAX_EXTERNAL_ACCOUNT,
        updatable=False,
    ),
    "display_name": Limited(
        "shopify", lambda m, v: setattr(m, "display_name", v), "display_name", MAX_DISPLAY_NAME
    ),
    "a tag": Limited("shopify", lambda m, v: m.tags.append(v), "tags[1]", MAX_TAG),
    "a list id": Limited(  # its characters are few: the limit is what is tried
        "shopify", lambda m, v: m.list_ids.append("l" * len(v)), "list_ids[1]", MAX_LIST_ID
    ),
    **{
        f"{service}.{f.name}": Limited(
            service,
            set_criteria(service, f.name),
            f"criteria.{service}.{f.name}",
            MAX_CRITERIA_TEXT,
        )
        for service, source in SOURCES.items()
        for f in fields(source.criteria_type)
        if f.type in ("str", str)
    },
}


def imports_of(client: Client, account: str) -> int:
    return len(client.imports.ListImports(pb.ListImportsRequest(account_id=account)).auto_imports)


def test_every_criteria_text_of_every_service_is_limited():
    criteria = {name for name in FIELDS if "." in name}
    assert len(criteria) >= len(SOURCES)  # each service has at least one


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(sorted(FIELDS)),
    extra=st.integers(min_value=1, max_value=100_000),
    call=st.sampled_from(["create", "update", "check", "preview"]),
    data=st.data(),
)
def test_any_field_over_its_limit_is_refused_naming_it_and_nothing_is_stored(
    account_client: Client, account: str, field: str, extra: int, call: str, data: st.DataObject
):
    limited = FIELDS[field]
    service, path, limit = limited.service, limited.path, limited.limit
    if call == "update" and not limited.updatable:
        call = "create"
    character = data.draw(st.characters(blacklist_categories=["Z", "C"]), "character")
    message = pb.AutoImport()
    message.CopyFrom(VALID[service])
    limited.set(message, character * (limit + extra))
    before = imports_of(account_client, account)
    existing = create(account_client, account, VALID[service]) if call == "update" else None
    imports = account_client.imports

    if call == "create":
        error = error_of(create, account_client, account, message)
    elif call == "update":
        assert existing is not None
        message.name = existing.name
        error = error_of(imports.UpdateImport, pb.UpdateImportRequest(auto_import=message))
    elif call == "check":
        request = pb.CheckConnectionRequest(account_id=account, auto_import=message)
        error = error_of(imports.CheckConnection, request)
    else:
        request = pb.PreviewImportRequest(account_id=account, auto_import=message)
        error = error_of(imports.PreviewImport, request)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    found = {f.removeprefix("auto_import."): d for f, d in violations(error).items()}
    assert f"{limit:,}" in found[path] or f"{limit}" in found[path], found
    after = 1 if existing else 0
    assert imports_of(account_client, account) == before + after
    if existing is not None:
        unchanged = imports.GetImport(pb.GetImportRequest(name=existing.name))
        assert unchanged.etag == existing.etag


def test_more_tags_or_list_ids_than_the_limit_are_refused(account_client: Client, account: str):
    too_many = [f"x{n}" for n in range(MAX_LABELS + 1)]
    for name in ("tags", "list_ids"):
        error = error_of(create, account_client, account, shopify_import(**{name: too_many}))
        assert violations(error)[f"auto_import.{name}"] == f"at most {MAX_LABELS} values"
        csv_error = error_of(upload, account_client, account, [b"email\n"], **{name: too_many})
        assert violations(csv_error)[f"options.{name}"] == f"at most {MAX_LABELS} values"
    assert imports_of(account_client, account) == 0


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


def test_csv_upload_tags_and_list_ids_over_their_limits_are_refused_naming_them(
    account_client: Client, account: str
):
    error = error_of(
        upload,
        account_client,
        account,
        [b"email\na@example.com\n"],
        tags=["t" * (MAX_TAG + 1)],
        list_ids=["l" * (MAX_LIST_ID + 1)],
    )
    found = violations(error)
    assert str(MAX_TAG) in found["options.tags[0]"]
    assert str(MAX_LIST_ID) in found["options.list_ids[0]"]
    assert contact_count(account_client, account) == 0


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(sorted(set(FIELDS) - {"a list id"})), data=st.data())
def test_a_nul_character_in_any_text_field_is_refused_and_the_read_model_advances(
    account_client: Client, account: str, field: str, data: st.DataObject
):
    """PostgreSQL's text columns cannot hold NUL: one stored in an import's settings stopped the
    read model's projection, for every account."""
    limited = FIELDS[field]
    message = pb.AutoImport()
    message.CopyFrom(VALID[limited.service])
    before = data.draw(st.text(alphabet="abc", max_size=3), "before")
    limited.set(message, f"{before}\0x")

    error = error_of(create, account_client, account, message)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    found = {f.removeprefix("auto_import."): d for f, d in violations(error).items()}
    assert "NUL" in found[limited.path], found
    create(account_client, account, VALID[limited.service])  # the read model still advances:
    assert imports_of(account_client, account) >= 1

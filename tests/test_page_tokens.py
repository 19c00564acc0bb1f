"""Page tokens: only those the service signed are read, whatever a caller sends instead.

A probe found that a cursor written by hand (its query key is a plain hash) reached the SQL driver
with a value of the wrong type (INTERNAL), and that a deeply nested one raised RecursionError.
"""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoimport.v1 import contacts_pb2, contacts_pb2_grpc
from autoimport.v1 import imports_pb2 as pb
from service.read_models.sql import (
    MAX_PAGE_TOKEN,
    InvalidPageToken,
    PageTokens,
    decode_page_token,
    encode_page_token,
    query_key,
)
from tests.support import Client, new_account, rich_status
from tests.test_api_imports import create, error_of


def forged(after: object, query: str) -> str:
    """A cursor as the service writes one, with any value in it, and no signature."""
    raw = json.dumps({"after": after, "query": query}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


TOKENS = PageTokens("server secret")
NESTED = base64.urlsafe_b64encode(b"[" * 1500).decode()  # JSON nested past the recursion limit


@given(st.text(max_size=3000))
def test_any_text_is_a_cursor_of_strings_or_invalid(text: str):
    try:
        after = decode_page_token(text, "q", 2)
    except InvalidPageToken:
        return
    assert len(after) == 2 and all(isinstance(value, str) for value in after)


@given(st.lists(st.text(), min_size=1, max_size=3), st.text(max_size=40))
def test_a_signed_cursor_reads_back_and_no_other_token_does(after: list[str], other: str):
    cursor = encode_page_token(after, "q")
    token = TOKENS.sign(cursor)

    assert TOKENS.verify(token) == cursor
    assert decode_page_token(TOKENS.verify(token), "q", len(after)) == after
    for refused in (
        cursor,
        other,
        token[:-1],
        f"{cursor}.{other}",
        PageTokens("other").sign(cursor),
    ):
        if refused and refused != token:  # "" is no token: the first page
            with pytest.raises(InvalidPageToken):
                TOKENS.verify(refused)


@pytest.mark.parametrize(
    "token",
    [
        NESTED,
        "[" * 5000,
        forged([{"x": 1}], "q"),
        forged([10**40, "a"], "q"),
        "x" * (MAX_PAGE_TOKEN + 1),
    ],
)
def test_hostile_cursors_are_invalid_not_errors_of_another_kind(token: str):
    with pytest.raises(InvalidPageToken):
        decode_page_token(token, "q", 2)


# -- end to end -------------------------------------------------------------------------------


def forgeries(account_id: str, import_id: str) -> list[str]:
    """Cursors with the right query keys (anyone can compute them) and wrong values."""
    return [
        forged([{"x": 1}], query_key("contacts", account_id)),
        forged([[1, 2], "id"], query_key("imports", account_id, "")),
        forged([10**40, "id"], query_key("syncs", import_id)),
        forged(["", "", {"x": 1}], query_key("due")),
        NESTED,
        "[" * 5000,
    ]


def test_forged_and_nested_tokens_are_invalid_argument_on_every_list(
    admin: Client, account: str, account_client: Client
):
    auto_import = create(account_client, account)
    import_id = auto_import.name.rsplit("/", 1)[1]
    contacts = contacts_pb2_grpc.ContactServiceStub(account_client.channel)
    lists = [
        lambda token: contacts.ListContacts(
            contacts_pb2.ListContactsRequest(account_id=account, page_token=token)
        ),
        lambda token: account_client.imports.ListImports(
            pb.ListImportsRequest(account_id=account, page_token=token)
        ),
        lambda token: account_client.imports.ListSyncs(
            pb.ListSyncsRequest(name=auto_import.name, page_token=token)
        ),
        lambda token: admin.imports.ListDueImports(pb.ListDueImportsRequest(page_token=token)),
    ]
    for token in forgeries(account, import_id):
        for call in lists:
            error = error_of(call, token)
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (token[:40], error.details())
            assert "page_token" in str(rich_status(error)["BadRequest"])


def test_a_token_of_one_account_is_refused_for_another(admin: Client, account: str):
    create(admin, account)
    create(admin, account)
    first = admin.imports.ListImports(pb.ListImportsRequest(account_id=account, page_size=1))
    assert first.next_page_token

    other = new_account(admin)
    error = error_of(
        admin.imports.ListImports,
        pb.ListImportsRequest(account_id=other, page_size=1, page_token=first.next_page_token),
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "other filters" in error.details()
    second = admin.imports.ListImports(
        pb.ListImportsRequest(account_id=account, page_size=1, page_token=first.next_page_token)
    )
    assert len(second.auto_imports) == 1 and second.auto_imports[0] != first.auto_imports[0]

"""Requests nobody wrote by hand, against a real server: bytes that are not the method's message,
calls cancelled midway. Each gets the right status, the log holds no traceback, and the server
stays up."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoimport.v1 import accounts_pb2, contacts_pb2, contacts_pb2_grpc, fields_pb2, imports_pb2
from autoimport.v1 import contacts_pb2 as cpb
from tests.support import Client, ServerProcess, new_account, store_env, wait_for
from tests.test_api_csv import contact_count
from tests.test_api_imports import create, shopify_import

FILES = (accounts_pb2, contacts_pb2, fields_pb2, imports_pb2)
METHODS = sorted(
    (f"/{service.full_name}/{method.name}", method)
    for file in FILES
    for service in file.DESCRIPTOR.services_by_name.values()
    for method in service.methods
)
NOT_A_MESSAGE = b"\xff\xff\xff\xff"  # a field number 0 of wire type 7: no message parses it


def raw_call(
    client: Client, path: str, method: object, payload: bytes | list[bytes]
) -> grpc.StatusCode:
    """Sends `payload` as the request's bytes (a list: the messages of a client stream); the
    status code of the answer."""
    payloads = payload if isinstance(payload, list) else [payload]
    streams_in = method.client_streaming  # type: ignore[attr-defined]
    streams_out = method.server_streaming  # type: ignore[attr-defined]
    kind = {
        (False, False): client.channel.unary_unary,
        (False, True): client.channel.unary_stream,
        (True, False): client.channel.stream_unary,
        (True, True): client.channel.stream_stream,
    }[(streams_in, streams_out)]
    call = kind(path)  # no serializers: bytes in, bytes out
    try:
        answer = call(iter(payloads) if streams_in else payloads[0], timeout=30)
        if streams_out:
            list(answer)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def new_lines(server: ServerProcess, since: int) -> str:
    return "".join(server.output[since:])


def test_a_request_that_is_not_the_method_s_message_is_invalid_argument_on_every_method(
    server: ServerProcess, admin: Client
):
    since = len(server.output)
    for path, method in METHODS:
        code = raw_call(admin, path, method, NOT_A_MESSAGE)
        assert code is grpc.StatusCode.INVALID_ARGUMENT, path
    log = new_lines(server, since)
    assert "Traceback" not in log and "deserializing" not in log


@pytest.mark.parametrize("token", [None, "aik_not_a_key"])
def test_a_caller_who_is_not_authenticated_learns_that_first_whatever_the_bytes(
    server: ServerProcess, token: str | None
):
    """Authentication comes before the request is looked at (AIP-193), parsed or not."""
    with server.client(token) as anonymous:
        for path, method in METHODS:
            code = raw_call(anonymous, path, method, NOT_A_MESSAGE)
            assert code is grpc.StatusCode.UNAUTHENTICATED, path


def test_the_message_says_which_message_was_expected(admin: Client):
    call = admin.channel.unary_unary("/autoimport.v1.AutoImportService/GetImport")
    try:
        call(NOT_A_MESSAGE, timeout=30)
    except grpc.RpcError as error:
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "request: is not a valid autoimport.v1.GetImportRequest message" in error.details()
    else:
        raise AssertionError("accepted")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=st.binary(max_size=300), which=st.integers(min_value=0))
def test_any_bytes_to_any_method_get_an_answer_that_is_not_a_server_error(
    server: ServerProcess, admin: Client, payload: bytes, which: int
):
    since = len(server.output)
    path, method = METHODS[which % len(METHODS)]

    code = raw_call(admin, path, method, payload)

    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (path, payload)
    assert "Traceback" not in new_lines(server, since), (path, payload)


def test_an_upload_the_client_cancels_is_logged_as_cancelled_and_keeps_whole_batches(
    server: ServerProcess, admin: Client
):
    """Cancelled after 1,299 of 1,300 rows: the two batches of 500 saved stay (BATCH_ROWS, each
    saved in one transaction), the 299 after them are not stored, and a retry with the same
    request_id carries on after the saved batches."""
    account = new_account(admin)
    rows = [b"email\n", *(b"u%d@example.com\n" % n for n in range(1300))]
    chunks = [b"".join(rows[i : i + 100]) for i in range(0, len(rows), 100)]
    file_size = sum(map(len, chunks))
    options = cpb.CsvImportOptions(
        account_id=account, request_id=str(uuid.uuid4()), size_bytes=file_size
    )
    stop = threading.Event()

    def requests(then_wait: bool) -> Iterator[cpb.ImportCsvRequest]:
        yield cpb.ImportCsvRequest(options=options)
        sent = chunks[:-1] if then_wait else chunks  # cut: the last row is never sent
        yield from (cpb.ImportCsvRequest(chunk=chunk) for chunk in sent)
        if then_wait:
            stop.wait(60)  # the client sends nothing more: it cancels

    since = len(server.output)
    stub = contacts_pb2_grpc.ContactServiceStub(admin.channel)
    future = stub.ImportCsv.future(requests(then_wait=True), timeout=60)
    wait_for(lambda: contact_count(admin, account), lambda n: n == 1000)  # two batches saved
    future.cancel()
    stop.set()

    # grpcio shows the server a cancel as such, or (now and then) as the stream's clean end:
    # then the declared size tells the cut (found: the rows sent were applied as the whole file).
    wait_for(
        lambda: new_lines(server, since),
        lambda log: "cancelled by the client" in log or "the stream ended after" in log,
    )
    log = new_lines(server, since)
    assert "Traceback" not in log and '"level": "ERROR"' not in log
    assert contact_count(admin, account) == 1000  # the rows after the last batch are not stored
    again = stub.ImportCsv(requests(then_wait=False), timeout=60)  # the server still answers
    assert (again.rows, again.added) == (1300, 1300)
    assert contact_count(admin, account) == 1300


# -- generated messages: every field of every request, filled by hypothesis ---------------------

CONTROL = "".join(map(chr, range(32))) + "\x7f\u202e\u2066"
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=CONTROL, min_size=1, max_size=10),
    st.text(min_size=300, max_size=3000),
    st.sampled_from(["", " ", "shopify", "google_contacts", "*", "accounts//imports/"]),
)
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
}


def values_of(field: FieldDescriptor, account: str, depth: int) -> st.SearchStrategy[Any]:
    """Values for one field: hostile ones, and now and then plausible ones (the caller's own
    account, a well-formed import name) so that calls get past their first check."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages_of(field.message_type, account, depth + 1)
    if field.type == FieldDescriptor.TYPE_STRING:
        if field.name in ("account_id", "name"):
            plausible = st.builds(lambda u: f"accounts/{account}/imports/{u}", st.uuids())
            return st.one_of(TEXT, st.just(account), plausible)
        return TEXT
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=200)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 12)  # proto3 enums are open: unknown values arrive as numbers
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True)
    low, high = INT_RANGES.get(field.type, (-(2**31), 2**31 - 1))
    return st.one_of(st.integers(low, high), st.sampled_from([0, -1, 1, low, high]))


def messages_of(descriptor: Descriptor, account: str, depth: int = 0) -> st.SearchStrategy[Any]:
    cls = GetMessageClass(descriptor)
    if depth > 2:
        return st.builds(cls)
    optional = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue  # no request has a map
        values = values_of(field, account, depth)
        optional[field.name] = st.lists(values, max_size=4) if field.is_repeated else values

    def build(chosen: dict[str, Any]) -> Any:
        message = cls()
        for name, value in chosen.items():
            target = descriptor.fields_by_name[name]
            if target.is_repeated:
                getattr(message, name).extend(value)
            elif target.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=optional).map(build)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), which=st.integers(min_value=0), as_admin=st.booleans())
def test_any_well_formed_request_to_any_method_gets_an_answer_that_is_not_a_server_error(
    server: ServerProcess,
    admin: Client,
    account_client: Client,
    account: str,
    data: st.DataObject,
    which: int,
    as_admin: bool,
):
    path, method = METHODS[which % len(METHODS)]
    count = st.integers(1, 3) if method.client_streaming else st.just(1)
    requests = data.draw(st.lists(messages_of(method.input_type, account), min_size=1, max_size=3))
    payloads = [r.SerializeToString() for r in requests[: data.draw(count)]]
    since = len(server.output)

    code = raw_call(admin if as_admin else account_client, path, method, payloads)

    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (path, requests)
    assert "Traceback" not in new_lines(server, since), (path, requests)


def test_a_due_time_beyond_what_a_timestamp_holds_is_invalid_and_one_near_year_1_lists(
    admin: Client,
):
    """Found by the test above: ListDueImports answered INTERNAL for both."""
    beyond = imports_pb2.ListDueImportsRequest(due_before=Timestamp(seconds=-62135596801))
    year_1 = imports_pb2.ListDueImportsRequest(due_before=Timestamp(seconds=-62135596800))

    try:
        admin.imports.ListDueImports(beyond)
    except grpc.RpcError as error:
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "due_before: is out of range" in error.details()
    else:
        raise AssertionError("accepted")
    assert admin.imports.ListDueImports(year_1) is not None


def test_the_message_limit_is_the_setting_s_both_ways_and_the_server_stays_up(tmp_path: Path):
    """The server enforces AUTOIMPORT_MAX_MESSAGE_BYTES, not grpcio's defaults (4 MiB received,
    anything sent). A transport setting: one store is enough."""
    limit = 4096
    with (
        store_env("sqlite", tmp_path) as env,
        ServerProcess({**env, "AUTOIMPORT_MAX_MESSAGE_BYTES": str(limit)}) as server,
        server.client(server.admin_token) as admin,
    ):
        since = len(server.output)
        account = new_account(admin)
        for i in range(3):  # each well under the limit, the three of them over it
            create(admin, account, shopify_import(tags=[f"{i}-{j}-{'t' * 200}" for j in range(8)]))
        listing = imports_pb2.ListImportsRequest(account_id=account)

        received = raw_call(
            admin,
            "/autoimport.v1.AutoImportService/GetImport",
            imports_pb2.DESCRIPTOR.services_by_name["AutoImportService"].methods_by_name[
                "GetImport"
            ],
            imports_pb2.GetImportRequest(name="x" * limit).SerializeToString(),
        )
        try:
            admin.imports.ListImports(listing)
        except grpc.RpcError as error:
            sent = error.code()
        else:
            sent = grpc.StatusCode.OK

        assert (received, sent) == (grpc.StatusCode.RESOURCE_EXHAUSTED,) * 2
        listing.page_size = 1
        assert len(admin.imports.ListImports(listing).auto_imports) == 1  # still up
        log = new_lines(server, since)
        assert "Traceback" not in log and '"level": "ERROR"' not in log


def test_a_stream_ending_short_of_its_declared_size_is_refused_and_a_retry_carries_on(
    admin: Client,
):
    """A client that declares the file's size (the CLI does) learns that its stream was cut,
    and nothing after the last saved batch is applied, however the cut looked to the server."""
    account = new_account(admin)
    data = b"email\n" + b"".join(b"s%d@example.com\n" % n for n in range(700))
    options = cpb.CsvImportOptions(
        account_id=account, request_id=str(uuid.uuid4()), size_bytes=len(data)
    )
    stub = contacts_pb2_grpc.ContactServiceStub(admin.channel)

    def send(part: bytes) -> cpb.CsvImportReport:
        messages = [cpb.ImportCsvRequest(options=options), cpb.ImportCsvRequest(chunk=part)]
        return stub.ImportCsv(iter(messages), timeout=60)

    try:
        send(data[: len(data) * 9 // 10])
    except grpc.RpcError as error:
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "the stream brought" in error.details() and "500 rows" in error.details()
    else:
        raise AssertionError("a cut stream was applied as the whole file")
    assert contact_count(admin, account) == 500
    assert send(data).added == 700


def test_a_nul_character_in_an_account_id_is_a_clean_answer_on_every_store(admin: Client):
    """Found by the generated-request test: on PostgreSQL, a read with account_id "\\0" reached
    the database, which refuses NUL in text, and answered INTERNAL."""
    for call in (
        lambda: admin.imports.ListImports(imports_pb2.ListImportsRequest(account_id="a\0b")),
        lambda: contacts_pb2_grpc.ContactServiceStub(admin.channel).ListContacts(
            cpb.ListContactsRequest(account_id="a\0b")
        ),
    ):
        try:
            call()
        except grpc.RpcError as error:
            assert error.code() in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.NOT_FOUND,
            ), error.details()

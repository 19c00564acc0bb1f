"""Requests nobody wrote by hand, against a real server: bytes that are not the method's message,
calls cancelled midway. Each gets the right status, the log holds no traceback, and the server
stays up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoimport.v1 import accounts_pb2, contacts_pb2, contacts_pb2_grpc, fields_pb2, imports_pb2
from autoimport.v1 import contacts_pb2 as cpb
from tests.support import Client, ServerProcess, new_account, store_env, wait_for
from tests.test_api_imports import create, shopify_import

FILES = (accounts_pb2, contacts_pb2, fields_pb2, imports_pb2)
METHODS = sorted(
    (f"/{service.full_name}/{method.name}", method)
    for file in FILES
    for service in file.DESCRIPTOR.services_by_name.values()
    for method in service.methods
)
NOT_A_MESSAGE = b"\xff\xff\xff\xff"  # a field number 0 of wire type 7: no message parses it


def raw_call(client: Client, path: str, method: object, payload: bytes) -> grpc.StatusCode:
    """Sends `payload` as the request's bytes; the status code of the answer."""
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
        answer = call(iter([payload]) if streams_in else payload, timeout=30)
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


def test_an_upload_the_client_cancels_is_logged_as_cancelled_not_as_an_error(
    server: ServerProcess, account_client: Client, account: str
):
    sent, stop = threading.Event(), threading.Event()

    def requests() -> Iterator[cpb.ImportCsvRequest]:
        yield cpb.ImportCsvRequest(options=cpb.CsvImportOptions(account_id=account))
        yield cpb.ImportCsvRequest(chunk=b"email\n" + b"x@example.com\n" * 10)
        sent.set()
        stop.wait(30)  # the client sends nothing more: it cancels

    since = len(server.output)
    stub = contacts_pb2_grpc.ContactServiceStub(account_client.channel)
    future = stub.ImportCsv.future(requests(), timeout=60)
    assert sent.wait(30)
    future.cancel()
    stop.set()

    wait_for(lambda: new_lines(server, since), lambda log: "cancelled by the client" in log)
    log = new_lines(server, since)
    assert "Traceback" not in log and '"level": "ERROR"' not in log
    again = stub.ImportCsv(
        iter(
            [
                cpb.ImportCsvRequest(options=cpb.CsvImportOptions(account_id=account)),
                cpb.ImportCsvRequest(chunk=b"email\ny@example.com\n"),
            ]
        )
    )
    assert again.added == 1  # the server still answers


def test_a_message_over_the_size_limit_is_resource_exhausted_and_the_server_stays_up(
    server: ServerProcess, admin: Client
):
    """AUTOIMPORT_MAX_MESSAGE_BYTES (4 MiB by default) bounds what a call may send."""
    too_big = imports_pb2.GetImportRequest(name="x" * (4 * 1024 * 1024 + 1))

    try:
        admin.imports.GetImport(too_big)
    except grpc.RpcError as error:
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    else:
        raise AssertionError("accepted")
    assert admin.imports.ListDueImports(imports_pb2.ListDueImportsRequest()) is not None


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

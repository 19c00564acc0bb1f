"""A service that accepts connections and never answers: a check or a preview of it ends by the
call's deadline (at most 60 s without one), and a server stopping with one in flight exits
soon after its grace period (it did not within 60 s)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from autoimport.v1 import imports_pb2 as pb
from service.preview import DEADLINE_PASSED
from service.server import GRACE_SECONDS
from tests.support import ServerProcess, new_account, store_env


@contextlib.contextmanager
def silent_service() -> Iterator[str]:
    """An address whose connections the kernel completes (the backlog) and no one reads."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def check_request(account_id: str) -> pb.CheckConnectionRequest:
    return pb.CheckConnectionRequest(
        account_id=account_id,
        auto_import=pb.AutoImport(
            service="shopify",
            external_account="silent-shop",
            credentials=pb.Credentials(access_token="shpat_x"),
        ),
    )


def preview_request(account_id: str) -> pb.PreviewImportRequest:
    check = check_request(account_id)
    return pb.PreviewImportRequest(account_id=account_id, auto_import=check.auto_import)


@pytest.mark.parametrize("method", ["CheckConnection", "PreviewImport"])
def test_a_call_to_a_silent_service_ends_with_its_callers_deadline(method: str, tmp_path: Path):
    """The call's work ends a moment before the caller's deadline (each request's timeout cut
    to it), so the caller hears why rather than its own DEADLINE_EXCEEDED; a check used to hold
    its thread for the read timeout of each of its requests and their retries."""
    request = {"CheckConnection": check_request, "PreviewImport": preview_request}[method]
    with (
        silent_service() as url,
        store_env("sqlite", tmp_path) as env,
        ServerProcess({**env, "AUTOIMPORT_SHOPIFY_URL": url}) as server,
        server.client(server.admin_token) as admin,
    ):
        account_id = new_account(admin)
        with pytest.raises(grpc.RpcError) as raised:
            getattr(admin.imports, method)(request(account_id), timeout=2)

    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.UNAVAILABLE,
        DEADLINE_PASSED,
    )


def test_a_check_of_a_silent_service_never_holds_a_stopping_server(tmp_path: Path):
    """A call whose thread still blocks after the grace period (the call's cancelled, its
    thread is not) no longer holds the process: it exits."""
    with (
        silent_service() as url,
        store_env("sqlite", tmp_path) as env,
    ):
        server = ServerProcess({**env, "AUTOIMPORT_SHOPIFY_URL": url}).start()
        with server.client(server.admin_token) as admin:
            account_id = new_account(admin)
            in_flight = admin.imports.CheckConnection.future(check_request(account_id))
            time.sleep(0.5)
            started = time.monotonic()
            code = server.terminate(timeout=GRACE_SECONDS + 50)
            stopped_in = time.monotonic() - started
            in_flight.cancel()
    print(f"stopped in {stopped_in:.1f} s")
    assert code == 0
    assert stopped_in < GRACE_SECONDS + 5, "".join(server.output)[-3000:]
    assert "exiting with calls still blocked after the grace period" in "".join(server.output)

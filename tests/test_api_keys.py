"""API keys end to end: listed without secrets, revoked, expiring, isolated by account, refused
on every replica within 1 s of a revocation; and the admin token rotated without downtime."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from autoimport.v1 import accounts_pb2 as apb
from tests.conftest import STORES
from tests.support import Client, ServerProcess, new_account, rich_status, store_env, wait_for
from tests.test_api_imports import error_of, violations

PREVIOUS_ADMIN_TOKENS = ("adm_before_rotation", "adm_long_ago")


@pytest.fixture(scope="module", params=STORES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """conftest's server, mid-rotation: two previous admin tokens still accepted."""
    data_dir = tmp_path_factory.mktemp(request.param)
    with store_env(request.param, data_dir) as env:
        env["AUTOIMPORT_ADMIN_TOKEN_PREVIOUS"] = " , ".join(PREVIOUS_ADMIN_TOKENS)
        with ServerProcess(env) as process:
            yield process


def create_key(admin: Client, account_id: str, **expiry: object) -> apb.CreateApiKeyResponse:
    response: apb.CreateApiKeyResponse = admin.accounts.CreateApiKey(
        apb.CreateApiKeyRequest(account_id=account_id, **expiry)  # type: ignore[arg-type]
    )
    return response


def list_keys(client: Client, account_id: str) -> list[apb.ApiKey]:
    return list(client.accounts.ListApiKeys(apb.ListApiKeysRequest(account_id=account_id)).api_keys)


def revoke(client: Client, account_id: str, key_id: str) -> apb.ApiKey:
    revoked: apb.ApiKey = client.accounts.RevokeApiKey(
        apb.RevokeApiKeyRequest(account_id=account_id, key_id=key_id)
    )
    return revoked


def get_account(client: Client, account_id: str) -> apb.Account:
    account: apb.Account = client.accounts.GetAccount(apb.GetAccountRequest(account_id=account_id))
    return account


def refusal(server: ServerProcess, key: str, account_id: str) -> grpc.RpcError | None:
    """The error a call with `key` meets now, None when the key opens the account."""
    with server.client(key) as client:
        try:
            get_account(client, account_id)
        except grpc.RpcError as e:
            return e
    return None


def in_future(delta: timedelta) -> timestamp_pb2.Timestamp:
    moment = timestamp_pb2.Timestamp()
    moment.FromDatetime(datetime.now(UTC) + delta)
    return moment


# -- list -------------------------------------------------------------------------------------


def test_list_shows_every_key_created_without_its_secret(
    server: ServerProcess, admin: Client, account: str
):
    expires = in_future(timedelta(days=30))
    plain = create_key(admin, account)
    expiring = create_key(admin, account, expire_time=expires)

    listed_by_admin = list_keys(admin, account)
    with server.client(plain.key) as own:
        listed_by_key = list_keys(own, account)

    assert listed_by_admin == listed_by_key
    assert [k.key_id for k in listed_by_admin] == [plain.key_id, expiring.key_id]
    assert listed_by_admin == [plain.api_key, expiring.api_key]
    first, second = listed_by_admin
    assert first.prefix == plain.key[:12] == f"aik_{plain.key_id}"
    assert first.creator == "admin"
    assert first.HasField("create_time")
    assert not first.HasField("expire_time") and not first.HasField("revoke_time")
    assert second.expire_time.seconds == expires.seconds
    shown = str(listed_by_admin)
    for created in (plain, expiring):
        assert created.key not in shown
        assert created.key.split("_")[-1] not in shown  # nor the secret part alone


def test_a_new_account_has_no_keys(admin: Client):
    assert list_keys(admin, new_account(admin)) == []


# -- revoke -----------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_with_a_message_saying_so(
    server: ServerProcess, admin: Client, account: str
):
    key = create_key(admin, account)
    assert refusal(server, key.key, account) is None

    revoked = revoke(admin, account, key.key_id)

    assert revoked.key_id == key.key_id and revoked.HasField("revoke_time")
    error = refusal(server, key.key, account)
    assert error is not None and error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in error.details() and "CreateApiKey" in error.details()
    assert rich_status(error)["ErrorInfo"].reason == "API_KEY_REVOKED"
    assert list_keys(admin, account)[-1] == revoked


def test_a_key_may_revoke_itself_and_its_siblings(
    server: ServerProcess, admin: Client, account: str
):
    first, second, third = (create_key(admin, account) for _ in range(3))

    with server.client(first.key) as holder:
        revoke(holder, account, second.key_id)
        revoke(holder, account, first.key_id)

    assert refusal(server, first.key, account) is not None
    assert refusal(server, second.key, account) is not None
    assert refusal(server, third.key, account) is None
    by_id = {k.key_id: k for k in list_keys(admin, account)}
    assert by_id[second.key_id].HasField("revoke_time")
    assert not by_id[third.key_id].HasField("revoke_time")


def test_revoking_twice_answers_the_same(admin: Client, account: str):
    key = create_key(admin, account)

    once = revoke(admin, account, key.key_id)
    twice = revoke(admin, account, key.key_id)

    assert once == twice


def test_an_unknown_key_id_is_not_found(admin: Client, account: str):
    error = error_of(revoke, admin, account, "0badf00d")

    assert error.code() is grpc.StatusCode.NOT_FOUND


def test_one_account_can_neither_list_nor_revoke_another_s_keys(
    server: ServerProcess, admin: Client
):
    mine, theirs = new_account(admin), new_account(admin)
    my_key, their_key = create_key(admin, mine), create_key(admin, theirs)

    with server.client(my_key.key) as me:
        list_error = error_of(list_keys, me, theirs)
        revoke_error = error_of(revoke, me, theirs, their_key.key_id)
        # Their key id through my own account: as if it did not exist anywhere.
        through_mine = error_of(revoke, me, mine, their_key.key_id)
    admin_through_mine = error_of(revoke, admin, mine, their_key.key_id)

    assert list_error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert revoke_error.code() is grpc.StatusCode.PERMISSION_DENIED
    for error in (through_mine, admin_through_mine):
        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert theirs not in error.details()
        assert error.details() == error_of(revoke, admin, mine, "0badf00d").details().replace(
            "0badf00d", their_key.key_id
        )
    assert refusal(server, their_key.key, theirs) is None


# -- expiry -----------------------------------------------------------------------------------


def test_an_expired_key_is_refused_with_a_message_saying_so(
    server: ServerProcess, admin: Client, account: str
):
    key = create_key(admin, account, ttl=duration_pb2.Duration(seconds=3))
    assert key.api_key.HasField("expire_time")
    assert refusal(server, key.key, account) is None

    error = wait_for(lambda: refusal(server, key.key, account), lambda e: e is not None, 10)

    assert error is not None and error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in error.details() and "CreateApiKey" in error.details()
    assert rich_status(error)["ErrorInfo"].reason == "API_KEY_EXPIRED"


@pytest.mark.parametrize(
    ("expiry", "field"),
    [
        ({"expire_time": in_future(timedelta(seconds=-1))}, "expire_time"),
        ({"ttl": duration_pb2.Duration(seconds=0)}, "ttl"),
        ({"ttl": duration_pb2.Duration(seconds=-60)}, "ttl"),
        ({"ttl": duration_pb2.Duration(seconds=315_576_000_000)}, "ttl"),
        ({"ttl": duration_pb2.Duration(seconds=2**62)}, "ttl"),
        ({"expire_time": timestamp_pb2.Timestamp(seconds=2**62)}, "expire_time"),
    ],
    ids=[
        "expire-time-in-the-past",
        "zero-ttl",
        "negative-ttl",
        "ttl-past-year-9999",
        "ttl-out-of-range",
        "expire-time-out-of-range",
    ],
)
def test_a_key_that_would_never_work_is_invalid(admin: Client, account: str, expiry, field):
    error = error_of(create_key, admin, account, **expiry)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(error)) == {field}
    assert list_keys(admin, account) == []


def test_only_the_admin_creates_keys_even_with_an_expiry(account_client: Client, account: str):
    error = error_of(create_key, account_client, account, ttl=duration_pb2.Duration(seconds=60))

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


# -- the admin token --------------------------------------------------------------------------


@pytest.mark.parametrize("token", PREVIOUS_ADMIN_TOKENS)
def test_a_previous_admin_token_is_still_the_admin(server: ServerProcess, token: str):
    with server.client(token) as admin:
        account_id = new_account(admin)
        key = create_key(admin, account_id)
        listed = list_keys(admin, account_id)

    assert [k.creator for k in listed] == ["admin"]
    assert refusal(server, key.key, account_id) is None


@pytest.mark.parametrize("token", ["adm_before_rotatio", "adm_before_rotation,adm_long_ago", " "])
def test_only_the_current_and_the_listed_previous_tokens_are_the_admin(
    server: ServerProcess, token: str
):
    with server.client(token) as client:
        error = error_of(client.accounts.UpsertAccount, apb.UpsertAccountRequest())

    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


# -- replicas ---------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_key_revoked_on_one_replica_is_refused_by_the_other_within_a_second(tmp_path: Path):
    with store_env("postgres", tmp_path) as env:
        second = {**env, "AUTOIMPORT_DATA_DIR": str(tmp_path / "second")}
        with (
            ServerProcess(env) as one,
            ServerProcess(second) as two,
            one.client(one.admin_token) as admin,
        ):
            account_id = new_account(admin)
            key = create_key(admin, account_id)
            # Replica two has the key in its cache.
            assert refusal(two, key.key, account_id) is None

            revoke(admin, account_id, key.key_id)

            # The contract: refused within 1 s (wait_for fails the test past it).
            error = wait_for(
                lambda: refusal(two, key.key, account_id), lambda e: e is not None, timeout=1
            )
            assert error is not None and error.code() is grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in error.details()

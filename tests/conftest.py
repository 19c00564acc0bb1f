"""Fixtures: real servers (subprocesses listening on loopback) on SQLite and on PostgreSQL.

PostgreSQL tests use AUTOIMPORT_TEST_DATABASE_URL (default: the local server, database `test`),
each server in a schema of its own. Without a reachable PostgreSQL they are skipped, except on CI
(CI=true), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import PG_URL, Client, ServerProcess, postgres_error
from tests.support import store_env as store_env_of

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_pg_error: list[str | None] = []


def require_postgres() -> None:
    if not _pg_error:
        _pg_error.append(postgres_error())
    if _pg_error[0] is None:
        return
    message = (
        f"PostgreSQL is not reachable at {PG_URL} ({_pg_error[0]}): start it, or point "
        "AUTOIMPORT_TEST_DATABASE_URL at one, to run the PostgreSQL tests"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres"):
        require_postgres()


@pytest.fixture
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Server environment for the store named by the test's `store` parameter."""
    with store_env_of(getattr(request, "param", "sqlite"), tmp_path) as env:
        yield env


@pytest.fixture(scope="module", params=STORES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per store for a whole test module; tests isolate themselves by account."""
    data_dir = tmp_path_factory.mktemp(request.param)
    with store_env_of(request.param, data_dir) as env, ServerProcess(env) as process:
        yield process


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[Client]:
    with server.client(server.admin_token) as client:
        yield client


@pytest.fixture
def account(admin: Client) -> str:
    """A fresh account (limit 1,000 contacts) for this test."""
    from autoimport.v1 import accounts_pb2

    account_id = f"acct-{uuid.uuid4().hex[:10]}"
    admin.accounts.UpsertAccount(
        accounts_pb2.UpsertAccountRequest(
            account=accounts_pb2.Account(account_id=account_id, plan="lite", contact_limit=1000)
        )
    )
    return account_id


@pytest.fixture
def account_client(server: ServerProcess, admin: Client, account: str) -> Iterator[Client]:
    """A client holding an API key of `account`."""
    from autoimport.v1 import accounts_pb2

    key = admin.accounts.CreateApiKey(accounts_pb2.CreateApiKeyRequest(account_id=account)).key
    with server.client(key) as client:
        yield client

"""An error that reaches a caller gets the status that says what to do: a connector's (a check, a
preview) retry later, or fix the credentials or the criteria, its words, which hold no secret,
the message; the store's retry shortly, or free space on a full disk."""

from __future__ import annotations

import sqlite3

import grpc
import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from google.rpc import error_details_pb2, status_pb2

from connectors.base import AuthError, PermanentError, ReauthRequired, RetryableError
from service.api.status import status_for


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (
            RetryableError("HubSpot is rate limiting"),
            grpc.StatusCode.UNAVAILABLE,
            "EXTERNAL_SERVICE_UNAVAILABLE",
        ),
        (
            AuthError("Shopify rejected the token"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "EXTERNAL_CREDENTIALS_REJECTED",
        ),
        (
            ReauthRequired("reconnect the account"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "EXTERNAL_CREDENTIALS_REJECTED",
        ),
        (
            PermanentError("no such audience"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "EXTERNAL_SERVICE_REFUSED",
        ),
    ],
)
def test_a_connector_error_gets_its_status_reason_and_words(error, code, reason):
    status = status_for(error)

    assert status.code == code
    assert status.details == str(error)
    ((_, metadata),) = [m for m in status.trailing_metadata if m[0] == "grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    status_pb2.Status.FromString(metadata).details[0].Unpack(info)
    assert info.reason == reason


def _sqlite_full() -> Exception:
    """The error SQLite really raises when the disk is full (a database capped at 2 pages),
    wrapped as eventsourcing wraps it."""
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (x BLOB)")
    connection.execute("PRAGMA max_page_count = 2")
    try:
        connection.execute("INSERT INTO t VALUES (?)", (bytes(100_000),))
    except sqlite3.OperationalError as e:
        try:
            raise OperationalError(e) from e
        except OperationalError as wrapped:
            return wrapped
    raise AssertionError("SQLite wrote past max_page_count")


def _postgres_full() -> Exception:
    try:
        raise OperationalError("could not extend file") from psycopg.errors.DiskFull(
            "could not extend file: No space left on device"
        )
    except OperationalError as wrapped:
        return wrapped


@pytest.mark.parametrize("error", [_sqlite_full(), _postgres_full()], ids=["sqlite", "postgres"])
def test_a_full_disk_is_resource_exhausted_not_retry_shortly(error):
    status = status_for(error)

    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status.details.startswith("the store's disk is full (")
    assert status.details.endswith("nothing of this call was written; free space on it, then retry")


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("database is locked"),
        # psycopg's own, where the service talks to PostgreSQL directly (advisory locks): found
        # restarting PostgreSQL under a server, as a traceback in its projector's log.
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.InterfaceError("the connection is closed"),
    ],
    ids=["locked", "postgres restarting", "connection closed"],
)
def test_a_store_that_cannot_be_used_just_now_is_unavailable(error):
    status = status_for(error)

    assert status.code == grpc.StatusCode.UNAVAILABLE
    assert status.details.startswith("the store cannot be used just now (")

"""A connector's error that reaches a caller (a check, a preview) gets the status that says
what to do: retry later, or fix the credentials or the criteria; its words, which hold no
secret, are the message."""

from __future__ import annotations

import grpc
import pytest
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

"""How each error reaches a caller: a canonical code, a message saying what to do, rich details
(google.rpc.Status with ErrorInfo and, where they apply, BadRequest or ResourceInfo)."""

from __future__ import annotations

import sqlite3

import grpc
import psycopg
from eventsourcing.persistence import (
    DataError,
    IntegrityError,
)
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from connectors.base import AuthError, ConnectorError, RetryableError
from domain.errors import InvalidTransition, ValidationError, cut
from service.errors import (
    STORE_ERRORS,
    EtagMismatch,
    NotFound,
    PermissionDenied,
    ServiceError,
    TooManySyncs,
    Unauthenticated,
    Unavailable,
    first_line,
)

ERROR_DOMAIN = "autoimport.v1"

# A status travels in trailers, which clients cap at 8 KiB (gRPC's default metadata limit): past
# that the caller sees RESOURCE_EXHAUSTED instead. Whatever input an error quotes, it stays under.
MAX_MESSAGE = 512  # bytes
MAX_VIOLATIONS = 10
MAX_VIOLATION_TEXT = 160  # bytes of a violation's field path, and of its description


def disk_full(error: BaseException | None) -> bool:
    """Whether the store refused for want of disk space, however the driver's error is wrapped:
    SQLite's SQLITE_FULL, PostgreSQL's disk_full (53100)."""
    while error is not None:
        if isinstance(error, psycopg.errors.DiskFull):
            return True
        if isinstance(error, sqlite3.Error) and error.sqlite_errorcode == sqlite3.SQLITE_FULL:
            return True
        error = error.__cause__
    return False


def status_for(error: Exception) -> grpc.Status:
    details: list[object] = []
    metadata: dict[str, str] = {}
    message = str(error)
    reason = getattr(error, "reason", "")
    if isinstance(error, ValidationError):
        code, reason = code_pb2.INVALID_ARGUMENT, "INVALID_ARGUMENT"
        listed = [
            error_details_pb2.BadRequest.FieldViolation(
                field=cut(v.field, MAX_VIOLATION_TEXT),
                description=cut(v.description, MAX_VIOLATION_TEXT),
            )
            for v in error.violations[:MAX_VIOLATIONS]
        ]
        message = "; ".join(f"{v.field}: {v.description}" for v in listed)
        if len(error.violations) > MAX_VIOLATIONS:  # the count first: the rest may be cut
            message = f"{len(error.violations)} invalid fields, the first {len(listed)}: {message}"
        details.append(error_details_pb2.BadRequest(field_violations=listed))
    elif isinstance(error, InvalidTransition):
        code = code_pb2.FAILED_PRECONDITION
    elif isinstance(error, NotFound):
        code = code_pb2.NOT_FOUND
        reason = f"{error.resource_type.upper()}_NOT_FOUND"
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type=error.resource_type, resource_name=error.resource_name
            )
        )
    elif isinstance(error, EtagMismatch):
        code = code_pb2.ABORTED
        metadata["currentEtag"] = error.current_etag
    elif isinstance(error, IntegrityError):
        code, reason = code_pb2.ABORTED, "CONCURRENT_MODIFICATION"
        message = f"changed concurrently by another request: retry ({error})"
    elif isinstance(error, Unauthenticated):
        code = code_pb2.UNAUTHENTICATED
    elif isinstance(error, PermissionDenied):
        code = code_pb2.PERMISSION_DENIED
    elif isinstance(error, (Unavailable, TimeoutError)):
        code, reason = code_pb2.UNAVAILABLE, "UNAVAILABLE"
    elif isinstance(error, TooManySyncs):
        code = code_pb2.RESOURCE_EXHAUSTED
    elif isinstance(error, ServiceError):
        code = code_pb2.FAILED_PRECONDITION
    # A connector's error reached a caller (a check or a preview): its message is written for
    # people and holds no secret.
    elif isinstance(error, RetryableError):
        code, reason = code_pb2.UNAVAILABLE, "EXTERNAL_SERVICE_UNAVAILABLE"
    elif isinstance(error, AuthError):
        code, reason = code_pb2.FAILED_PRECONDITION, "EXTERNAL_CREDENTIALS_REJECTED"
    elif isinstance(error, ConnectorError):
        code, reason = code_pb2.FAILED_PRECONDITION, "EXTERNAL_SERVICE_REFUSED"
    elif isinstance(error, (psycopg.DataError, DataError)):
        # A value the store cannot hold or compare, that no check before caught: PostgreSQL
        # refuses NUL characters in text (the request's, not the server's, fault).
        code, reason = code_pb2.INVALID_ARGUMENT, "INVALID_ARGUMENT"
        message = f"a value of the request cannot be used ({first_line(error)}): fix it"
    elif isinstance(error, STORE_ERRORS) and disk_full(error):
        # gRPC's own words for RESOURCE_EXHAUSTED: "perhaps the entire file system is out of
        # space". Retrying soon is no use: someone must free space. Rolled back as below.
        code, reason = code_pb2.RESOURCE_EXHAUSTED, "STORE_FULL"
        message = (
            f"the store's disk is full ({first_line(error)}): nothing of this call was written; "
            "free space on it, then retry"
        )
    elif isinstance(error, STORE_ERRORS):
        # The store could not do it: locked by another process, the disk full, the database
        # restarting or unreachable. The transaction was rolled back: nothing half-written.
        code, reason = code_pb2.UNAVAILABLE, "STORE_UNAVAILABLE"
        message = f"the store cannot be used just now ({first_line(error)}): retry shortly"
    elif isinstance(error, NotImplementedError):  # a method the generated base class declares
        code, reason = code_pb2.UNIMPLEMENTED, "UNIMPLEMENTED"
        message = "this server does not implement the method"
    else:
        code, reason = code_pb2.INTERNAL, "INTERNAL"
        message = "internal error: the server log has the details"
    message = cut(message, MAX_MESSAGE)
    details.insert(
        0, error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)
    )
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)  # type: ignore[arg-type]
        packed.append(any_detail)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=packed))

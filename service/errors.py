"""Errors of the service layer (beyond the domain's): the API maps each class to a gRPC status."""

from __future__ import annotations

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from domain.errors import cut

# The store could not do what was asked (locked, disk full, database down): the store's fault,
# not the code's; the API answers UNAVAILABLE (RESOURCE_EXHAUSTED for a full disk). Raised by
# eventsourcing, or by psycopg itself where the service talks to PostgreSQL directly (advisory
# locks of the leases and of the store's preparation).
STORE_ERRORS = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)

MAX_RESOURCE_NAME = 200  # bytes of a resource name quoted back (ResourceInfo and the message)


def first_line(error: Exception) -> str:
    """A driver's reason, without the SQL or the connection details that may follow it."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


class ServiceError(Exception):
    reason = "ERROR"


class NotFound(ServiceError):
    reason = "NOT_FOUND"

    def __init__(self, resource_type: str, resource_name: str, hint: str = ""):
        self.resource_type = resource_type
        self.resource_name = cut(resource_name, MAX_RESOURCE_NAME)
        super().__init__(f"{resource_type} {self.resource_name} does not exist{hint}")


class EtagMismatch(ServiceError):
    reason = "ETAG_MISMATCH"

    def __init__(self, resource_name: str, current_etag: str):
        self.current_etag = current_etag
        super().__init__(
            f"{resource_name} was changed since you read it (its etag is now {current_etag}): "
            "read it again and reapply your change"
        )


class Unauthenticated(ServiceError):
    reason = "UNAUTHENTICATED"


class ApiKeyRevoked(Unauthenticated):
    reason = "API_KEY_REVOKED"


class ApiKeyExpired(Unauthenticated):
    reason = "API_KEY_EXPIRED"


class PermissionDenied(ServiceError):
    reason = "PERMISSION_DENIED"


class Unavailable(ServiceError):
    reason = "UNAVAILABLE"


class TooManySyncs(ServiceError):
    """The server runs as many syncs as it allows (AUTOIMPORT_MAX_SYNCS): try again later."""

    reason = "TOO_MANY_SYNCS"

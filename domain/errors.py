"""Domain errors: a broken rule raises one of these; the API layer maps each class to a status."""

from __future__ import annotations

from dataclasses import dataclass


def shown(value: str, limit: int = 60) -> str:
    """The caller's input quoted in an error: a short prefix, as errors travel in trailers that
    clients cap at 8 KiB."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}..."


def cut(text: str, limit_bytes: int) -> str:
    """`text` in at most `limit_bytes` of UTF-8, marked where it was cut."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit_bytes:
        return text
    return encoded[: limit_bytes - 3].decode("utf-8", "ignore") + "..."


class DomainError(Exception):
    """A request that the rules of the domain refuse."""


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its path within the resource and what would be allowed."""

    field: str
    description: str


class ValidationError(DomainError):
    """Input that does not describe a valid value; lists every invalid field at once."""

    def __init__(self, violations: list[FieldViolation]):
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))

    @classmethod
    def single(cls, field: str, description: str) -> ValidationError:
        return cls([FieldViolation(field, description)])

    def under(self, prefix: str) -> ValidationError:
        """The same violations with field paths nested under `prefix` (e.g. "auto_import")."""
        return ValidationError(
            [FieldViolation(f"{prefix}.{v.field}", v.description) for v in self.violations]
        )


class Violations:
    """Collects the violations of one input so that a caller learns about all of them at once."""

    def __init__(self) -> None:
        self._found: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._found.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self._found:
            raise ValidationError(list(self._found))


class InvalidTransition(DomainError):
    """A command the aggregate's current state does not allow (e.g. resuming an active import)."""

    reason = "INVALID_TRANSITION"


class ImportIsDeleted(InvalidTransition):
    reason = "IMPORT_DELETED"


class ImportNotPaused(InvalidTransition):
    reason = "IMPORT_NOT_PAUSED"


class ImportAlreadyPaused(InvalidTransition):
    reason = "IMPORT_ALREADY_PAUSED"


class ImportNeedsReauth(InvalidTransition):
    reason = "IMPORT_NEEDS_REAUTH"


class ImportNotActive(InvalidTransition):
    reason = "IMPORT_NOT_ACTIVE"

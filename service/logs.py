"""Logging of the service's processes (`serve`, `projector`, `scheduler`, `doctor`): JSON lines
when stderr is not a terminal (a log collector reads it), readable lines on a terminal; and the
one line each sync ends with.

No secret is ever logged: nothing formats credentials, tokens or keys into a message in the
first place (credentials travel in headers and encrypted events only), and, as a net under
that, every line is scrubbed of the secrets this process knows (`hide`: the admin token, the
cipher key, the Google client secret, the database password) and of anything shaped like a
token (bearer values, API keys, Shopify and HubSpot tokens, Google access tokens), which shows
as REDACTED.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from domain.auto_import import AutoImport
from domain.sync_report import SyncOutcome, SyncReport

if TYPE_CHECKING:
    from service.config import Settings

REDACTED = "[REDACTED]"
# Shapes of secrets: bearer values, this service's API keys and admin tokens, Shopify's and
# HubSpot's access tokens, Google's OAuth tokens, a password in a URL.
SECRET_PATTERNS = re.compile(
    r"(?i:bearer)\s+[^\s\"',]+"
    r"|\b(?:aik|adm|shpat|shpca|shppa|shpss)_[\w-]+"
    r"|\bpat-[a-z0-9]+-[\w-]+"
    r"|\bya29\.[\w.-]+"
    r"|\b1//[\w-]{20,}"
    r"|(?<=://)(?P<user>[^\s/:@\"']+):[^\s/@\"']+(?=@)"
)
# LogRecord's own attributes: anything else on a record came as `extra` and goes into the JSON.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_secrets: set[str] = set()
_lock = threading.Lock()


def hide(*secrets: str) -> None:
    """Secret values that no log line of this process may show (empty ones are ignored)."""
    with _lock:
        _secrets.update(s for s in secrets if s and len(s) >= 6)


def hide_secrets_of(settings: Settings) -> None:
    """The secrets of the configuration: admin tokens (current and previous), cipher key,
    every connector setting marked secret (e.g. Google's OAuth client secret), and the
    database password."""
    hide(
        settings.admin_token,
        *settings.previous_admin_tokens,
        settings.cipher_key,
        *settings.connectors.secrets(),
        unquote(urlsplit(settings.database_url).password or ""),
    )


def scrub(text: str) -> str:
    """`text` without any known secret or token-shaped string."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return SECRET_PATTERNS.sub(_redact, text)


def _redact(match: re.Match[str]) -> str:
    user = match.group("user")
    return f"{user}:{REDACTED}" if user else REDACTED


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the record's
    `extra` fields, and the exception's traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(_scrubbed(line), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger>: <message>` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _time(record)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def configure(stream: IO[str] | None = None, log_format: str | None = None) -> None:
    """Sends every log record of the process to `stream` (stderr), at INFO and above: as JSON
    lines, unless `stream` is a terminal. `log_format` (default: $AUTOIMPORT_LOG_FORMAT):
    `json` or `text` forces one, `auto` (or nothing) decides by the terminal."""
    stream = sys.stderr if stream is None else stream
    chosen = (log_format or os.environ.get("AUTOIMPORT_LOG_FORMAT", "") or "auto").lower()
    if chosen not in ("json", "text"):  # `auto`, or a value it does not know
        chosen = "text" if _is_terminal(stream) else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter() if chosen == "text" else JsonFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request's full URL
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def current_format() -> str:
    """`text` or `json`: what `configure` chose for this process (json when it did not run), so
    that a child process writing to the same stderr writes the same."""
    handlers = logging.getLogger().handlers
    return "text" if any(isinstance(h.formatter, TextFormatter) for h in handlers) else "json"


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- the line of each sync -------------------------------------------------------------------
sync_log = logging.getLogger("service.sync")


def log_sync(auto_import: AutoImport, report: SyncReport) -> None:
    """One line for a sync that ended: the import, its service, the outcome, the counts, the
    duration, and the error of a failed sync. Never the skipped contacts' emails (the report
    lists them for ListSyncs; a log is no place for them)."""
    name = f"accounts/{auto_import.account_id}/imports/{auto_import.id}"
    service = auto_import.service
    outcome = report.outcome.value
    counts = report.counts()
    seconds = report.seconds
    shown = ", ".join(f"{key} {value}" for key, value in counts.items() if value) or "nothing"
    took = f" in {seconds:.2f} s" if seconds is not None else ""
    error = report.error
    message = f"sync {name} ({service}) {outcome}{took}: {shown}"
    if error:
        message += f"; error: {error}"
    sync_log.log(
        logging.WARNING if report.outcome is SyncOutcome.FAILED else logging.INFO,
        message,
        extra={
            "event": "sync_finished",
            "import": name,
            "account_id": auto_import.account_id,
            "service": service,
            "sync_id": report.sync_id,
            "outcome": outcome,
            "counts": counts,
            "duration_seconds": None if seconds is None else round(seconds, 3),
            "error": error,
        },
    )

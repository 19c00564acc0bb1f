"""`autoimport doctor`: checks a deployment from its configuration, as a process of its own, and
says in plain words what is wrong; exit 1 when something is.

Checks, in order (a check that cannot run because an earlier one failed is skipped, and says so):
- configuration: the AUTOIMPORT_* variables (Settings.from_env, as the server reads them);
- store: reachable (PostgreSQL answers; the SQLite files exist), its tables there, and the cipher
  key able to read the events (the check that makes a server refuse to start);
- read model: how many events the projections have not applied; behind and not advancing
  means that no projector runs, or that it is stuck;
- scheduler: whether every active import was synced about once per interval, read from the
  read model's due listing (what ListDueImports answers, by the one due rule of
  domain/auto_import.py) for a time one interval ago, since doctor cannot ask another process
  for its state: an import more than one interval past due means that no scheduler runs, or
  that it does not keep up;
- connectors: each configured base URL answers an HTTP request (no credentials sent; any HTTP
  answer, even 404, counts as reachable).

No table or schema is created: the stores are opened without creating tables. (Reading the
configuration generates the admin token and cipher key files of an empty data directory, as
every command does.)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

from connectors import SOURCES
from connectors.base import Setting
from connectors.http import USER_AGENT
from domain.auto_import import ImportState, next_sync_due
from service.application import AutoImports
from service.config import ConfigError, Settings
from service.logs import hide_secrets_of, scrub
from service.read_models import open_view
from service.read_models.views import VIEW_CLASSES, AccountViews, AccountViewsProjection
from service.stores import check_cipher_key

CONNECT_TIMEOUT = 3.0  # seconds for the database and for each connector's URL
LAG_WAIT = 5.0  # seconds to watch a read model that is behind, for it to advance


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    warning: bool = False  # ok, but worth changing: printed as WARN, not counted as a problem

    def line(self) -> str:
        status = "WARN" if self.warning else "ok" if self.ok else "FAIL"
        return scrub(f"{status:<5} {self.check}: {self.detail}")


def run(
    out: TextIO,
    environ: dict[str, str] | None = None,
    *,
    lag_wait: float = LAG_WAIT,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Runs every check, printing one line each as it ends; 0 when all pass, else 1."""
    findings: list[Finding] = []

    def report(finding: Finding) -> None:
        findings.append(finding)
        print(finding.line(), file=out, flush=True)

    for finding in _checks(environ, lag_wait, now):
        report(finding)
    problems = [f for f in findings if not f.ok]
    if problems:
        print(f"\n{len(problems)} problem{'s' * (len(problems) > 1)} found", file=out)
        return 1
    print("\neverything looks right", file=out)
    return 0


def _checks(
    environ: dict[str, str] | None, lag_wait: float, now: Callable[[], datetime]
) -> Iterator[Finding]:
    try:
        settings = Settings.from_env(environ)
    except ConfigError as e:
        yield Finding("configuration", False, str(e))
        yield Finding("store", False, "not checked: the configuration is wrong")
        return
    hide_secrets_of(settings)
    yield Finding("configuration", True, _describe(settings))
    if settings.cipher_key_beside_the_data:
        yield Finding("cipher key", True, settings.cipher_key_beside_the_data, warning=True)
    with _stores(settings) as (store, app, views):
        yield store
        if app is None or views is None:
            yield Finding("read model", False, "not checked: the store cannot be read")
            yield Finding("scheduler", False, "not checked: the store cannot be read")
        else:
            yield _lag(app, views, lag_wait)
            yield _scheduler(settings, views, now())
    yield from _connectors(settings)


def _describe(settings: Settings) -> str:
    store = (
        f"PostgreSQL {_database(settings)}, schema {settings.database_schema}"
        if settings.uses_postgres
        else f"SQLite in {settings.data_dir}"
    )
    metrics = "off" if settings.metrics_listen is None else "{}:{}".format(*settings.metrics_listen)
    return (
        f"{store}; sync interval {settings.sync_interval:g} s; gRPC on {settings.listen}; "
        f"metrics {metrics}; TLS {'on' if settings.tls_cert else 'off'}"
    )


def _database(settings: Settings) -> str:
    """The database as user@host:port/name, never its password."""
    parts = urlsplit(settings.database_url)
    user = f"{parts.username}@" if parts.username else ""
    return f"{user}{parts.hostname or '127.0.0.1'}:{parts.port or 5432}{parts.path}"


@contextlib.contextmanager
def _stores(
    settings: Settings,
) -> Iterator[tuple[Finding, AutoImports | None, AccountViews | None]]:
    """The store's finding, and the event store and read model when they can be read."""
    with contextlib.ExitStack() as resources:
        yield _open_stores(settings, resources)


def _open_stores(
    settings: Settings, resources: contextlib.ExitStack
) -> tuple[Finding, AutoImports | None, AccountViews | None]:
    """Opens the event store and the read model (closed with `resources`) without creating
    anything, and says whether they can be read."""
    unreachable = _unreachable(settings)
    if unreachable:
        return Finding("store", False, unreachable), None, None
    try:
        app = AutoImports({**settings.store_env("events"), "CREATE_TABLE": "no"})
    except Exception as e:
        return Finding("store", False, f"cannot open the event store: {_one_line(e)}"), None, None
    try:
        events = app.recorder.max_notification_id() or 0
        check_cipher_key(app)  # closes the app when it refuses the key
    except ConfigError as e:
        return Finding("store", False, str(e)), None, None
    except Exception as e:
        app.close()
        return Finding("store", False, _missing_tables("event store", settings, e)), None, None
    resources.callback(app.close)
    name = AccountViewsProjection.name
    try:
        views: AccountViews = open_view(
            AccountViewsProjection, VIEW_CLASSES, {**settings.store_env(name), "CREATE_TABLE": "no"}
        )
    except Exception as e:
        return Finding("store", False, f"cannot open the read model: {_one_line(e)}"), None, None
    resources.callback(views.datastore.close)
    try:
        for table in (*AccountViews.tables, "tracking"):
            _probe(views, table)
    except Exception as e:
        return Finding("store", False, _missing_tables("read model", settings, e)), None, None
    readable = f"reachable, tables present, {events} events readable with the cipher key"
    return Finding("store", True, readable), app, views


def _probe(views: AccountViews, table: str) -> None:
    if table == "tracking":
        views.max_tracking_id("doctor")
    else:
        views.fetch(f"SELECT 1 AS one FROM {{t}}{table} LIMIT 1", {})


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


def _unreachable(settings: Settings) -> str:
    """Why the store cannot be opened at all, or ''."""
    if not settings.uses_postgres:
        files = [settings.data_dir / "events.sqlite"]
        files.append(settings.data_dir / f"{AccountViewsProjection.name}.sqlite")
        missing = [f.name for f in files if not f.exists()]
        if missing:
            return (
                f"no store in {settings.data_dir} ({', '.join(missing)} missing): the server has "
                "not run with this AUTOIMPORT_DATA_DIR, or the variable points at the wrong place"
            )
        return ""
    try:
        with psycopg.connect(settings.database_url, connect_timeout=int(CONNECT_TIMEOUT)) as conn:
            found = conn.execute(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                (settings.database_schema,),
            ).fetchone()
    except psycopg.Error as e:
        reason = " ".join(str(e).split())
        return (
            f"cannot reach PostgreSQL at {_database(settings)} ({reason}): is it running, and "
            "is AUTOIMPORT_DATABASE_URL right?"
        )
    if found is None:
        return (
            f"PostgreSQL {_database(settings)} has no schema {settings.database_schema!r}: the "
            "server has not run on it, or AUTOIMPORT_DATABASE_SCHEMA is wrong"
        )
    return ""


def _missing_tables(what: str, settings: Settings, error: Exception) -> str:
    where = (
        f"schema {settings.database_schema!r}" if settings.uses_postgres else str(settings.data_dir)
    )
    reason = _one_line(error)
    return (
        f"the {what}'s tables are missing or unreadable in {where} ({reason}): start "
        "`autoimport serve` once, which creates them"
    )


def _lag(app: AutoImports, views: AccountViews, wait: float) -> Finding:
    """Events not yet in the read model; behind and not moving for `wait` seconds is a problem."""
    latest = app.recorder.max_notification_id() or 0
    first = views.max_tracking_id(app.name) or 0
    position = first
    deadline = time.monotonic() + wait
    while position < latest and time.monotonic() < deadline:
        time.sleep(0.1)
        position = views.max_tracking_id(app.name) or 0
    if position >= latest:
        return Finding("read model", True, f"up to date (event {latest})")
    behind = latest - position
    if position > first:
        return Finding(
            "read model",
            True,
            f"{behind} events behind, catching up ({position - first} applied in {wait:g} s)",
        )
    return Finding(
        "read model",
        False,
        f"{behind} events behind (at event {position} of {latest}) and not advancing for "
        f"{wait:g} s: no projector is running (every server has AUTOIMPORT_RUN_PROJECTIONS=no "
        "and no `autoimport projector` runs), or it is stuck on an event (its log says which; "
        "gRPC health `autoimport.projector` is NOT_SERVING)",
    )


def _scheduler(settings: Settings, views: AccountViews, now: datetime) -> Finding:
    """Every active import is due by the one rule (`next_sync_due`: at once when it never
    synced, else one interval after its last sync began); one more interval past that means
    nobody schedules it. The imports listed are the read model's due listing (as the scheduler
    gets it from ListDueImports) for a time one interval ago."""
    interval = timedelta(seconds=settings.sync_interval)
    active, newest = _active_imports(views)
    if not active:
        return Finding("scheduler", True, "no active import: nothing to schedule")
    # Due one interval ago: the last sync began at least two intervals ago, or none did.
    cutoff = now - 2 * interval
    overdue: list[tuple[datetime, str]] = []
    token = ""
    while True:
        page = views.list_due(None if token else cutoff, 1000, token)
        for due_import in page.rows:
            due = next_sync_due(
                due_import.create_time, due_import.last_sync_start, settings.sync_interval
            )
            if now - due > interval:
                name = f"accounts/{due_import.account_id}/imports/{due_import.import_id}"
                overdue.append((due, name))
        token = page.next_page_token
        if not token:
            break
    latest = f"the newest sync began {_ago(now - newest)} ago" if newest else "no import synced yet"
    if not overdue:
        return Finding("scheduler", True, f"{active} active imports, none overdue; {latest}")
    overdue.sort()
    due, name = overdue[0]
    return Finding(
        "scheduler",
        False,
        f"{len(overdue)} of {active} active imports are more than one interval "
        f"({_ago(interval)}) past due, e.g. {name}, due {_ago(now - due)} ago; {latest}: is "
        "`autoimport scheduler` running against this server, and keeping up?",
    )


def _active_imports(views: AccountViews) -> tuple[int, datetime | None]:
    """How many imports are active, and when the newest sync of any of them began."""
    rows = views.fetch(
        "SELECT COUNT(*) AS n, MAX(last_sync_start) AS newest FROM {t}imports WHERE state = :state",
        {"state": ImportState.ACTIVE.value},
    )
    newest = _instant(rows[0]["newest"]) if rows and rows[0]["newest"] else None
    return (int(rows[0]["n"]) if rows else 0), newest


def _instant(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ago(span: timedelta) -> str:
    seconds = max(0.0, span.total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _connectors(settings: Settings) -> Iterator[Finding]:
    """Every base URL setting of every source: reachable from here?"""
    targets = [
        (
            source.id if setting.name == "url" else f"{source.id} {setting.name}",
            setting,
            settings.connectors.of(source)[setting.name],
        )
        for source in SOURCES.values()
        for setting in source.settings
        if setting.url
    ]
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        found = list(pool.map(lambda target: _reach(*target), targets))
    yield from found


def _reach(name: str, setting: Setting, url: str) -> Finding:
    check, variable = f"connector {name}", setting.env
    if not url:
        return Finding(check, True, f"{setting.when_empty or 'not set'}: not checked")
    shown = _without_userinfo(url)
    try:
        with httpx.Client(timeout=CONNECT_TIMEOUT, headers={"User-Agent": USER_AGENT}) as client:
            response = client.get(url, follow_redirects=False)
    except httpx.HTTPError as e:
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        return Finding(
            check,
            False,
            f"cannot reach {shown} ({type(e).__name__}: {reason}): its syncs will fail; check "
            f"{variable}, DNS, the proxy and the firewall",
        )
    return Finding(check, True, f"{shown} answers (HTTP {response.status_code})")


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))

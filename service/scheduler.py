"""`autoimport scheduler`: the sidecar that keeps every active import synced, once per interval.

It talks to a server over gRPC only, and keeps no state of its own. Every round (every `poll`
seconds) it asks the server which imports are due, across every account and page by page
(ListDueImports), and asks for a scheduled sync of each (TriggerSync with `scheduled`), a few
at a time (`concurrency`), each after a random delay of up to `jitter` seconds so that imports
that became due together do not all start in the same second. The server decides, on the import
itself and under its sync lease, whether a sync is due: a scheduled trigger of an import that is
not due, or already syncing, runs nothing. So schedulers may run side by side (on PostgreSQL,
against any replicas), be killed and restarted at any time, and an outage is caught up with one
sync per import, not one per missed window.

Each TriggerSync carries a fresh request_id and a deadline shorter than the interval
(`sync_timeout`): a sync that needs longer stops there and the next one carries on from its last
saved page, one interval after it began.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import logging
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from autoimport.v1 import imports_pb2, imports_pb2_grpc
from service import client_cli, logs, metrics
from service.config import PREFIX, ConfigError, metrics_listen, sync_interval

log = logging.getLogger(__name__)

CONCURRENCY = 4  # scheduled syncs in flight at once (the server allows AUTOIMPORT_MAX_SYNCS)
PAGE_SIZE = 500
LIST_TIMEOUT = 30.0  # seconds: the deadline of each ListDueImports call
GRACE_SECONDS = 10.0  # on SIGTERM: how long the replies of syncs in flight are waited for


@dataclass(frozen=True)
class SchedulerSettings:
    interval: float
    concurrency: int = CONCURRENCY
    jitter: float = 0.0
    poll: float = 1.0
    sync_timeout: float = 1.0

    @classmethod
    def from_env(
        cls, environ: dict[str, str] | None = None, **options: float | None
    ) -> SchedulerSettings:
        """From AUTOIMPORT_SYNC_INTERVAL (the server's) and AUTOIMPORT_SCHEDULER_*; an option
        given (not None) wins over its variable. The defaults follow the interval: a round
        every tenth of it (at most 10 s), jitter up to a tenth of it (at most 30 s), and a
        deadline of eight tenths of it."""
        env = os.environ if environ is None else environ
        interval = sync_interval(dict(env))

        def number(name: str, default: float) -> float:
            given = options.get(name)
            if given is not None:
                return float(given)
            variable = f"{PREFIX}SCHEDULER_{name.upper()}"
            text = env.get(variable, "").strip()
            if not text:
                return default
            try:
                return float(text)
            except ValueError:
                raise ConfigError(f"{variable} must be a number, not {text!r}") from None

        settings = cls(
            interval=interval,
            concurrency=int(number("concurrency", CONCURRENCY)),
            jitter=number("jitter", min(30.0, interval / 10)),
            poll=number("poll", min(10.0, interval / 10)),
            sync_timeout=number("sync_timeout", interval * 0.8),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if not 1 <= self.concurrency <= 1000:
            raise ConfigError(f"{PREFIX}SCHEDULER_CONCURRENCY must be from 1 to 1000")
        if self.jitter < 0:
            raise ConfigError(f"{PREFIX}SCHEDULER_JITTER must not be negative")
        if self.poll <= 0:
            raise ConfigError(f"{PREFIX}SCHEDULER_POLL must be greater than 0")
        if not 0 < self.sync_timeout < self.interval:
            raise ConfigError(
                f"{PREFIX}SCHEDULER_SYNC_TIMEOUT must be greater than 0 and shorter than "
                f"{PREFIX}SYNC_INTERVAL ({self.interval:g} s), so that a sync ends before the "
                "next one is due"
            )


@dataclass(order=True)
class _Planned:
    fire_at: float  # time.monotonic()
    seq: int
    name: str
    due: datetime  # when the import became due


class Scheduler:
    """Rounds of ListDueImports and scheduled TriggerSyncs. `on_due(n)`: the number of imports
    due at each round; `on_late(seconds)`: how long after its due time each sync began."""

    def __init__(
        self,
        stub: imports_pb2_grpc.AutoImportServiceStub,
        token: str,
        settings: SchedulerSettings,
        *,
        rng: random.Random | None = None,
        on_due: Callable[[int], None] = lambda n: None,
        on_late: Callable[[float], None] = lambda seconds: None,
    ):
        self._stub = stub
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._settings = settings
        self._rng = rng or random.Random()
        self._on_due = on_due
        self._on_late = on_late
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._planned: list[_Planned] = []  # a heap, by fire time
        self._pending: set[str] = set()  # planned or in flight: never twice at once from here
        self._in_flight = 0
        self._seq = itertools.count()
        self._executor = futures.ThreadPoolExecutor(
            max_workers=settings.concurrency, thread_name_prefix="trigger"
        )

    def run(self, stopping: threading.Event) -> None:
        """Runs rounds until `stopping` is set, then waits a little for the syncs in flight."""
        next_round = 0.0
        while not stopping.is_set():
            if time.monotonic() >= next_round:
                self.look()
                next_round = time.monotonic() + self._settings.poll
            until = min(next_round, self._fire_ready())
            self._wake.clear()
            if not stopping.is_set():
                # In short steps: Python runs a signal's handler only between them.
                self._wake.wait(min(0.5, max(0.0, until - time.monotonic())))
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + GRACE_SECONDS
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop_waiting(self) -> None:
        """Wakes `run` (e.g. once `stopping` is set)."""
        self._wake.set()

    def look(self) -> int:
        """One round: plans a scheduled sync of every due import not already planned or in
        flight; returns how many were due (None planned when the server cannot be asked)."""
        now = timestamp_pb2.Timestamp()
        now.FromDatetime(datetime.now(UTC))
        due = 0
        token = ""
        try:
            while True:
                page = self._stub.ListDueImports(
                    imports_pb2.ListDueImportsRequest(
                        page_size=PAGE_SIZE, page_token=token, due_before=now
                    ),
                    metadata=self._metadata,
                    timeout=LIST_TIMEOUT,
                )
                due += len(page.due_imports)
                for item in page.due_imports:
                    self._plan(item.name, item.next_sync_time.ToDatetime(tzinfo=UTC))
                token = page.next_page_token
                if not token:
                    break
        except grpc.RpcError as e:
            log.warning("cannot list the due imports: %s: %s", _code_name(e), _details(e))
            return 0
        self._on_due(due)
        return due

    def _plan(self, name: str, due: datetime) -> None:
        with self._lock:
            if name in self._pending:
                return
            self._pending.add(name)
            delay = self._rng.uniform(0, self._settings.jitter)
            heapq.heappush(
                self._planned, _Planned(time.monotonic() + delay, next(self._seq), name, due)
            )

    def _fire_ready(self) -> float:
        """Starts the planned syncs whose time has come, as long as fewer than `concurrency`
        are in flight; returns when to look again (time.monotonic())."""
        with self._lock:
            while (
                self._planned
                and self._planned[0].fire_at <= time.monotonic()
                and self._in_flight < self._settings.concurrency
            ):
                planned = heapq.heappop(self._planned)
                self._in_flight += 1
                self._executor.submit(self._trigger, planned)
            if self._planned and self._in_flight < self._settings.concurrency:
                return self._planned[0].fire_at
            return float("inf")  # woken when a sync ends, or at the next round

    def _trigger(self, planned: _Planned) -> None:
        try:
            self._trigger_sync(planned.name, planned.due)
        except Exception:
            log.exception("scheduled sync of %s", planned.name)
        finally:
            with self._lock:
                self._pending.discard(planned.name)
                self._in_flight -= 1
            self._wake.set()

    def _trigger_sync(self, name: str, due: datetime) -> None:
        request = imports_pb2.TriggerSyncRequest(
            name=name, request_id=str(uuid.uuid4()), scheduled=True
        )
        try:
            report = self._stub.TriggerSync(
                request, metadata=self._metadata, timeout=self._settings.sync_timeout
            )
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                log.info("%s waits for a later round: %s", name, _details(e))
            elif code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                log.info("%s is not to be synced: %s", name, _details(e))  # changed meanwhile
            else:
                log.warning("scheduled sync of %s: %s: %s", name, _code_name(e), _details(e))
            return
        if report.not_started:
            why = imports_pb2.SyncReport.NotStarted.Name(report.not_started)
            log.info(
                "%s: no sync started (%s)",
                name,
                why,
                extra={"event": "scheduled_sync", "import": name, "not_started": why},
            )
            return
        late = (report.start_time.ToDatetime(tzinfo=UTC) - due).total_seconds()
        self._on_late(max(0.0, late))
        outcome = imports_pb2.SyncReport.Outcome.Name(report.outcome)
        log.info(
            "%s: %s, %d fetched, %d added, %d updated, %d deferred, began %.1f s after it was "
            "due%s",
            name,
            outcome,
            report.fetched,
            report.added,
            report.updated,
            report.deferred,
            late,
            f" ({report.error})" if report.error else "",
            extra={
                "event": "scheduled_sync",
                "import": name,
                "sync_id": report.sync_id,
                "outcome": outcome,
                "late_seconds": round(late, 3),
            },
        )


def _code_name(error: grpc.RpcError) -> str:
    return error.code().name if isinstance(error, grpc.Call) else type(error).__name__


def _details(error: grpc.RpcError) -> str:
    return str(error.details()) if isinstance(error, grpc.Call) else str(error)


# -- the command ----------------------------------------------------------------------------


def add_scheduler_command(commands: Any) -> None:
    parser = commands.add_parser(
        "scheduler",
        help="run the scheduler sidecar: a scheduled sync of every due import, once per "
        "AUTOIMPORT_SYNC_INTERVAL (a client of the server: --address, --token, --ca-cert)",
        description="Keeps every active import synced once per AUTOIMPORT_SYNC_INTERVAL by "
        "calling the server at --address (or $AUTOIMPORT_ADDRESS) with the admin token "
        "($AUTOIMPORT_TOKEN, else $AUTOIMPORT_ADMIN_TOKEN, else $AUTOIMPORT_DATA_DIR/admin.token). "
        "Stateless: run it beside the server, or as replicas.",
    )
    parser.add_argument(
        "--address", default=argparse.SUPPRESS, help="server host:port (as the client option)"
    )
    for name, metavar, help in (
        ("concurrency", "N", f"scheduled syncs in flight at once (default {CONCURRENCY})"),
        ("jitter", "SECONDS", "random delay of each sync, up to (default: interval/10, <= 30)"),
        ("poll", "SECONDS", "seconds between rounds (default: interval/10, <= 10)"),
        ("sync-timeout", "SECONDS", "deadline of each sync (default: 0.8 x the interval)"),
    ):
        variable = f"{PREFIX}SCHEDULER_{name.upper().replace('-', '_')}"
        parser.add_argument(
            f"--{name}",
            type=int if name == "concurrency" else float,
            metavar=metavar,
            help=f"{help}; ${variable}",
        )


def run_scheduler(args: argparse.Namespace) -> int:
    """`autoimport scheduler`: runs until SIGTERM or SIGINT."""
    logs.configure()  # as the server: JSON lines on stderr, readable ones on a terminal
    try:
        settings = SchedulerSettings.from_env(
            concurrency=args.concurrency,
            jitter=args.jitter,
            poll=args.poll,
            sync_timeout=args.sync_timeout,
        )
        address = client_cli.server_address(args.address)
        ca_cert = args.ca_cert or os.environ.get("AUTOIMPORT_CA_CERT")
        channel = client_cli.open_channel(address, ca_cert)
        metrics_address = metrics.start_http_server(metrics_listen())
    except (ConfigError, client_cli.UsageError) as e:
        print(f"autoimport scheduler: {e}", file=sys.stderr)
        return 2
    token = client_cli.client_token(args.token)
    logs.hide(token)
    stopping = threading.Event()
    with channel:
        scheduler = Scheduler(
            imports_pb2_grpc.AutoImportServiceStub(channel),
            token,
            settings,
            on_due=metrics.SCHEDULER_DUE.set,
            on_late=metrics.SCHEDULER_LATE.observe,
        )

        def stop(*_: Any) -> None:
            stopping.set()
            scheduler.stop_waiting()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        print(
            f"autoimport scheduler: syncing the due imports of {address} every "
            f"{settings.interval:g} s, at most {settings.concurrency} at once",
            flush=True,
        )
        if metrics_address:
            print(f"autoimport scheduler metrics at http://{metrics_address}/metrics", flush=True)
        scheduler.run(stopping)
    log.info("scheduler stopped")
    return 0

"""Every Prometheus metric of the service, in one place, and the HTTP endpoint that exposes them.

The server counts syncs (a listener of its SyncEngine), contacts, connector HTTP errors (a
listener of connectors/http.py) and every RPC (service/api/interceptors.MetricsInterceptor), and
reports the read model's lag when scraped. The scheduler process sets the scheduler's metrics
and calls `start_http_server` like the server does.

Names follow Prometheus' conventions: counters end in `_total` (prometheus-client adds it),
durations are in seconds; the RPC metrics are those of go-grpc-prometheus, so that existing
dashboards work.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import start_http_server as _start_http_server

from connectors import http
from domain.sync_report import SyncReport
from service.config import ConfigError

log = logging.getLogger(__name__)
# No `_created` series beside each counter and histogram: they double what is scraped and tell
# nothing that the process start time does not.
disable_created_metrics()

# -- syncs ----------------------------------------------------------------------------------
SYNCS = Counter(
    "autoimport_syncs",
    "Syncs that ended, by the import's service and the sync's outcome "
    "(COMPLETED, CAPPED, LIMIT_REACHED, FAILED)",
    ["service", "outcome"],
)
# The report's counter behind each `result` label.
CONTACT_RESULTS: dict[str, Callable[[SyncReport], int]] = {
    "added": lambda r: r.added,
    "updated": lambda r: r.updated,
    "skipped_missing_email": lambda r: r.skipped_missing_email,
    "skipped_invalid_email": lambda r: r.skipped_invalid_email,
    "skipped_at_source": lambda r: r.skipped_at_source,
    "deferred": lambda r: r.deferred,
    "blocked": lambda r: r.blocked_by_limit,
}
CONTACTS = Counter(
    "autoimport_contacts",
    "Contacts decided by syncs, by service and result: added, updated, skipped_missing_email, "
    "skipped_invalid_email, skipped_at_source, deferred (over the window's 500), blocked (at the "
    "contact limit)",
    ["service", "result"],
)
SYNC_DURATION = Histogram(
    "autoimport_sync_duration_seconds",
    "How long syncs took, from their start to their end as recorded in their reports",
    ["service"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
CONNECTOR_HTTP_ERRORS = Counter(
    "autoimport_connector_http_errors",
    "Error answers of the external services (every try, retried or not), by service "
    "(google_contacts, google_oauth, shopify, hubspot) and status: the HTTP status code, or "
    "the transport error (ConnectError, ReadTimeout, ...)",
    ["service", "status"],
)

# -- read model -----------------------------------------------------------------------------
PROJECTION_LAG = Gauge(
    "autoimport_projection_lag_events",
    "Events in the event store that the read model has not applied yet (read when scraped)",
    ["projection"],
)

# -- scheduler (set by the scheduler process) -------------------------------------------------
SCHEDULER_DUE = Gauge(
    "autoimport_scheduler_due_imports",
    "Imports that were due when the scheduler's latest round looked",
)
SCHEDULER_LATE = Histogram(
    "autoimport_scheduler_late_seconds",
    "How long after its due time each scheduled sync began",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)

# -- gRPC (service/api/interceptors.MetricsInterceptor) ---------------------------------------
RPC_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
GRPC_STARTED = Counter("grpc_server_started", "RPCs started on the server", RPC_LABELS)
GRPC_HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed on the server, whatever their status code",
    [*RPC_LABELS, "grpc_code"],
)
GRPC_HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "How long the server took to handle RPCs (a stream: to its last message)",
    RPC_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def count_sync(auto_import: Any, report: SyncReport) -> None:
    """A sync of `auto_import` ended with `report` (a listener of the server's SyncEngine)."""
    service = auto_import.service
    SYNCS.labels(service, report.outcome.value).inc()
    for result, count in CONTACT_RESULTS.items():
        CONTACTS.labels(service, result).inc(count(report))
    if report.seconds is not None:
        SYNC_DURATION.labels(service).observe(report.seconds)


# connectors/http.py names services as its messages do; the label is the service's id, as in
# autoimport_syncs_total (Google's token endpoint apart: a host and a failure of its own).
HTTP_SERVICE_LABELS = {
    "Google": "google_contacts",
    "Google OAuth": "google_oauth",
    "Shopify": "shopify",
    "HubSpot": "hubspot",
}


def count_connector_http_error(service: str, status: str) -> None:
    label = HTTP_SERVICE_LABELS.get(service) or re.sub(r"[^a-z0-9]+", "_", service.lower())
    CONNECTOR_HTTP_ERRORS.labels(label, status).inc()


def rpc_started(grpc_type: str, method: str) -> Callable[[str, float], None]:
    """Counts an RPC (`method`: /package.Service/Method) as started; returns what records its
    end: `(code name, seconds)`."""
    service, _, name = method.lstrip("/").rpartition("/")
    labels = (grpc_type, service, name)
    GRPC_STARTED.labels(*labels).inc()

    def handled(code: str, seconds: float) -> None:
        GRPC_HANDLED.labels(*labels, code).inc()
        GRPC_HANDLING.labels(*labels).observe(seconds)

    return handled


def watch_server(app: Any, views: Any, projection: str) -> None:
    """Instruments a server's process: the lag of `views` behind `app`'s event store, read when
    scraped, and the connectors' HTTP errors."""

    def lag() -> float:
        try:
            latest = app.recorder.max_notification_id() or 0
            return float(max(0, latest - (views.max_tracking_id(app.name) or 0)))
        except Exception:  # the store is closing or unreachable: unknown, not an error page
            return math.nan

    PROJECTION_LAG.labels(projection).set_function(lag)
    http.on_error(count_connector_http_error)


def start_http_server(
    listen: tuple[str, int] | None, registry: CollectorRegistry = REGISTRY
) -> str | None:
    """Serves /metrics on `listen` (host, port; port 0 picks a free one) in a daemon thread;
    returns the address it listens on ("host:port"), or None when metrics are off.
    ConfigError when the address cannot be had (e.g. another process on this host holds the
    port: give each process its own AUTOIMPORT_METRICS_LISTEN)."""
    if listen is None:
        return None
    host, port = listen
    try:
        server, _ = _start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port} ({e.strerror or e}): set "
            "AUTOIMPORT_METRICS_LISTEN to a free address (port 0 picks one), or to off"
        ) from None
    bound_port = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    address = f"{shown}:{bound_port}"
    log.info("metrics at http://%s/metrics", address, extra={"metrics_address": address})
    return address

"""A full first sync through each connector's emulator, with the HTTP time and the service's own
time reported separately.

Method: each emulator (emulators/) runs alone in a subprocess on loopback, as a person
would start it by hand, holding --contacts contacts (500 by default: one sync window's worth, so
one TriggerSync is the whole first sync). The server runs in this process (`build_server`, real
gRPC over a loopback socket) on SQLite and on PostgreSQL, with its connectors wrapped so that the
time spent inside `fetch_page` (the HTTP round trips, decoding, mapping, and the connector's own
rate-limit spacing) is summed. Each run creates a fresh account and an import, and times
TriggerSync until its report comes back:

- source s: the time inside the connector during the sync;
- service s: the rest (deciding each contact, saving every page with its events, the gRPC call);
- direct read s, the baseline, measured side by side just before the sync: the same connector
  reading the same contacts on its own, with nothing saved.

The ratio TriggerSync / direct read says what the service adds to merely reading the source.
Reports the median of --runs runs, after one warm-up run.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import connectors
from autoimport.v1 import accounts_pb2, imports_pb2
from connectors.base import Connector, ConnectorFactory
from domain.auto_import import AutoImport
from domain.sources import Criteria
from domain.sync import ContactPage
from service.config import Settings
from service.server import build_server
from tests.support import PG_URL, Client, postgres_error, store_env

ADMIN_TOKEN = "adm_bench_token"
SHOPIFY_TOKEN = "shpat_bench_0123456789"
HUBSPOT_TOKEN = "pat-na1-bench-0123456789"
# The emulators with a fixed token: the server setting of their URL, their account, their token.
SIMPLE = {
    "shopify": ("AUTOIMPORT_SHOPIFY_URL", "bench-shop", SHOPIFY_TOKEN),
    "hubspot": ("AUTOIMPORT_HUBSPOT_URL", "12345678", HUBSPOT_TOKEN),
}
QUIET = 1.1  # seconds without requests between two readers


@dataclass
class Emulator:
    """What an import and the server need to read a running emulator."""

    service: str
    external_account: str
    env: dict[str, str]  # the server's settings that point at it
    credentials: imports_pb2.Credentials


def _read_until(process: subprocess.Popen[str], pattern: str, seen: list[str]) -> re.Match[str]:
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        for text in seen:
            if match := re.search(pattern, text):
                return match
    raise RuntimeError(f"the emulator stopped before printing {pattern!r}: {''.join(seen)}")


@contextlib.contextmanager
def emulator(service: str, contacts: int) -> Iterator[Emulator]:
    module, extra = {
        "shopify": ("shopify", ["--token", SHOPIFY_TOKEN, "--shop", "bench-shop"]),
        "google_contacts": ("google_contacts", []),
        "hubspot": ("hubspot", ["--token", HUBSPOT_TOKEN, "--portal", "12345678"]),
    }[service]
    command = [sys.executable, "-m", f"emulators.{module}", "--port", "0"]
    command += ["--contacts", str(contacts), *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        seen: list[str] = []
        url = _read_until(process, r"listening on (http://\S+)", seen).group(1)
        if service in SIMPLE:
            setting, external_account, token = SIMPLE[service]
            credentials = imports_pb2.Credentials(access_token=token)
            yield Emulator(service, external_account, {setting: url}, credentials)
        else:
            refresh = _read_until(process, r"refresh token: (\S+)", seen).group(1)
            text = "".join(seen)

            def value(name: str) -> str:
                match = re.search(rf"{name}[=:]\s*(\S+)", text)
                assert match, f"no {name} in {text}"
                return match.group(1)

            yield Emulator(
                service,
                "owner@example.com",
                {
                    "AUTOIMPORT_GOOGLE_CONTACTS_URL": url,
                    "AUTOIMPORT_GOOGLE_OAUTH_URL": url,
                    "AUTOIMPORT_GOOGLE_CLIENT_ID": value("AUTOIMPORT_GOOGLE_CLIENT_ID"),
                    "AUTOIMPORT_GOOGLE_CLIENT_SECRET": value("AUTOIMPORT_GOOGLE_CLIENT_SECRET"),
                },
                imports_pb2.Credentials(access_token=value("access token"), refresh_token=refresh),
            )
    finally:
        process.terminate()
        process.wait(10)


class TimedConnector:
    """A connector that adds the time spent in each `fetch_page` to its factory's total."""

    def __init__(self, inner: Connector, factory: TimedConnectors):
        self._inner = inner
        self._factory = factory
        self.lag = inner.lag

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
        start = time.perf_counter()
        try:
            return self._inner.fetch_page(criteria, cursor, until)
        finally:
            self._factory.seconds += time.perf_counter() - start

    def close(self) -> None:
        self._inner.close()


class TimedConnectors:
    def __init__(self, factory: ConnectorFactory):
        self._factory = factory
        self.seconds = 0.0

    def __call__(self, auto_import: AutoImport) -> Connector:
        return TimedConnector(self._factory(auto_import), self)


def read_directly(connector: Connector, criteria: Criteria) -> tuple[float, int]:
    """The time one connector takes to read every contact on its own, and how many it read."""
    cursor, fetched = "", 0
    start = time.perf_counter()
    try:
        while True:
            until = datetime.now(UTC) - connector.lag
            page = connector.fetch_page(criteria, cursor, until)
            fetched += len(page.contacts)
            cursor = page.cursor
            if not page.has_more:
                return time.perf_counter() - start, fetched
    finally:
        connector.close()


@dataclass
class Run:
    sync: float
    source: float
    direct: float
    fetched: int

    @property
    def service(self) -> float:
        return self.sync - self.source


def time_first_syncs(env: dict[str, str], source: Emulator, runs: int) -> list[Run]:
    settings = Settings.from_env(
        {
            **env,
            **source.env,
            "AUTOIMPORT_LISTEN": "127.0.0.1:0",
            "AUTOIMPORT_ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )
    real = connectors.factory(settings.connectors)
    timed = TimedConnectors(real)
    server = build_server(settings, timed)
    results = []
    try:
        with Client(server.address, ADMIN_TOKEN) as client:
            for run in range(runs + 1):  # the first run warms up
                account_id = f"bench-{uuid.uuid4().hex[:8]}"
                client.accounts.UpsertAccount(
                    accounts_pb2.UpsertAccountRequest(
                        account=accounts_pb2.Account(
                            account_id=account_id, plan="p", contact_limit=10**7
                        )
                    )
                )
                created = client.imports.CreateImport(
                    imports_pb2.CreateImportRequest(
                        account_id=account_id,
                        auto_import=imports_pb2.AutoImport(
                            service=source.service,
                            external_account=source.external_account,
                            credentials=source.credentials,
                        ),
                    )
                )
                auto_import = server.app.get_import(account_id, uuid.UUID(created.name[-36:]))
                criteria = connectors.SOURCES[auto_import.service].criteria_of(auto_import.criteria)
                direct, fetched = read_directly(real(auto_import), criteria)
                # A quiet second: rate limits (HubSpot: 5 searches a second per account) count
                # the requests of both readers alike, and neither starts in the other's second.
                time.sleep(QUIET)
                timed.seconds = 0.0
                start = time.perf_counter()
                report = client.imports.TriggerSync(
                    imports_pb2.TriggerSyncRequest(name=created.name), timeout=300
                )
                elapsed = time.perf_counter() - start
                if report.outcome != imports_pb2.SyncReport.COMPLETED:
                    raise RuntimeError(f"the first sync did not complete: {report}")
                if run:
                    results.append(Run(elapsed, timed.seconds, direct, report.fetched))
                assert report.fetched == fetched, (report.fetched, fetched)
                time.sleep(QUIET)
    finally:
        server.stop(grace=1)
    return results


def median(runs: list[Run], attribute: str) -> Any:
    return statistics.median(getattr(run, attribute) for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.connectors", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--services", default="shopify,google_contacts,hubspot")
    args = parser.parse_args()
    print(
        f"a first sync of {args.contacts} contacts per emulator, "
        f"median of {args.runs} runs (after one warm-up)"
    )
    header = (
        *("store", "service", "fetched", "TriggerSync s", "source s", "service s"),
        *("direct read s", "ratio"),
    )
    widths = (9, 16, 8, 14, 9, 10, 14, 6)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for store in args.stores.split(","):
        if store == "postgres" and (error := postgres_error()):
            print(f"{store:9} skipped: PostgreSQL is not reachable at {PG_URL} ({error})")
            continue
        for service in args.services.split(","):
            with (
                tempfile.TemporaryDirectory(prefix="bench-connectors-") as tmp,
                emulator(service, args.contacts) as source,
                store_env(store, Path(tmp)) as env,
            ):
                runs = time_first_syncs(env, source, args.runs)
            sync, direct = median(runs, "sync"), median(runs, "direct")
            cells = (
                store,
                service,
                str(median(runs, "fetched")),
                f"{sync:.3f}",
                f"{median(runs, 'source'):.3f}",
                f"{median(runs, 'service'):.3f}",
                f"{direct:.3f}",
                f"{sync / direct:.1f}",
            )
            print(" ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)), flush=True)


if __name__ == "__main__":
    main()

"""Latency of GetImport and ListContacts (100 a page) next to a bare gRPC echo round trip.

Absolute latencies depend on the machine and on whatever else it is doing, so each figure is
reported next to a baseline measured side by side, and the ratio is what is judged:

- Baseline: a bare grpcio echo server (bench/echo_server.py) in a subprocess, with the real
  server's thread pool but no protobuf, interceptors or storage. The client sends it raw bytes
  of the size of the measured call's response.
- Measured: the real server (`python -m service.cli serve`, via tests.support.ServerProcess) in
  a subprocess, on each store (PostgreSQL: a schema of its own, dropped afterwards). It holds an
  account with 20 imports of mixed services and 1,000 contacts (a CSV import); the calls use the
  account's key. GetImport reads one import; ListContacts reads the first page of 100.
- Both clients go through the same tests.support client (bearer token and deadline
  interceptor), so client-side costs cancel.
- For each call, its echo baseline runs immediately before it: 200 warm-up calls, then
  --latency-calls timed calls (garbage collection off while timing), for the echo and then for
  the call. Blocks, not call-by-call alternation: alternating, each echo call overlaps the work
  the service does after answering and, on a small machine, the baseline then rises with the
  cost of the call it is compared with, which hides regressions (measured on 2 CPUs: echo p50
  330 -> 620 us next to SQLite UpdateImport, ratio 11 -> 5.6).
- All of that is repeated --latency-runs times; a row shows the median of the runs, for the
  call and for its echo (its details: every run's ratio). p99 (the 10th slowest of 1,000 calls)
  is much noisier than p50, on both sides of the ratio: judge by the p50 ratio first.

Targets (issue 11): GetImport's p50 at most 2 x echo on SQLite, 3 x on PostgreSQL; ListContacts
is measured with no target (a page of 100 rows is more work than a call's fixed cost).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from autoimport.v1 import accounts_pb2, contacts_pb2, contacts_pb2_grpc, imports_pb2
from bench import cli
from bench.echo_server import PATH as ECHO_PATH
from bench.report import ROOT, Figure, Target, log, stop_child
from tests.support import Client, ServerProcess, store_env

NAME = "latency"
WARMUP = 200
ACCOUNT = "bench"
IMPORT_COUNT = 20
CONTACT_COUNT = 1000
PAGE = 100
P50_TARGET = {"sqlite": 2.0, "postgres": 3.0}

Call = Callable[[], object]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--latency-calls", type=int, help="timed calls per measurement (1,000)")
    group.add_argument("--latency-runs", type=int, help="repetitions, the median is shown (2)")


@contextlib.contextmanager
def echo_server() -> Iterator[str]:
    """The baseline server in a subprocess; yields its address."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.echo_server"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        port = process.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"the echo server did not start (it printed {port!r})")
        yield f"127.0.0.1:{port}"
    finally:
        stop_child(process)


# -- the account, its imports and contacts, and the calls --------------------------------------


def new_import(i: int) -> imports_pb2.AutoImport:
    """The i-th import: Shopify, HubSpot and Google Contacts in turn."""
    service = ("shopify", "hubspot", "google_contacts")[i % 3]
    external_account = {
        "shopify": f"store-{i}",
        "hubspot": str(1000 + i),
        "google_contacts": f"bench-{i}@example.com",
    }[service]
    credentials = imports_pb2.Credentials(
        access_token="x", refresh_token="y" if service == "google_contacts" else ""
    )
    return imports_pb2.AutoImport(
        service=service, external_account=external_account, credentials=credentials
    )


def set_up(server: ServerProcess) -> tuple[str, str]:
    """Creates the account, its API key, its imports and contacts; returns the key and the
    name of an import."""
    with server.client(server.admin_token) as admin:
        admin.accounts.UpsertAccount(
            accounts_pb2.UpsertAccountRequest(
                account=accounts_pb2.Account(account_id=ACCOUNT, plan="lite", contact_limit=10**5)
            )
        )
        key = admin.accounts.CreateApiKey(accounts_pb2.CreateApiKeyRequest(account_id=ACCOUNT)).key
    with server.client(key) as client:
        names = [
            client.imports.CreateImport(
                imports_pb2.CreateImportRequest(account_id=ACCOUNT, auto_import=new_import(i))
            ).name
            for i in range(IMPORT_COUNT)
        ]
        rows = "".join(
            f"person{n:05d}@example.com,First{n},Last{n}\n" for n in range(CONTACT_COUNT)
        )
        report = contacts_pb2_grpc.ContactServiceStub(client.channel).ImportCsv(
            iter(
                [
                    contacts_pb2.ImportCsvRequest(
                        options=contacts_pb2.CsvImportOptions(account_id=ACCOUNT)
                    ),
                    contacts_pb2.ImportCsvRequest(
                        chunk=f"email,first name,last name\n{rows}".encode()
                    ),
                ]
            ),
            timeout=120,
        )
        if report.added != CONTACT_COUNT:
            raise RuntimeError(f"the CSV import of the contacts failed: {report}")
    return key, names[0]


def service_calls(client: Client, import_name: str) -> dict[str, Call]:
    get = imports_pb2.GetImportRequest(name=import_name)
    listing = contacts_pb2.ListContactsRequest(account_id=ACCOUNT, page_size=PAGE)
    contacts = contacts_pb2_grpc.ContactServiceStub(client.channel)
    return {
        "GetImport": lambda: client.imports.GetImport(get),
        f"ListContacts ({PAGE} a page)": lambda: contacts.ListContacts(listing),
    }


def echo_call(client: Client, payload: bytes) -> Call:
    stub = client.channel.unary_unary(ECHO_PATH)  # no (de)serializers: raw bytes
    return lambda: stub(payload)


# -- measuring ------------------------------------------------------------------------------


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def timed(call: Call, count: int) -> list[float]:
    """Latencies of `count` sequential calls, in microseconds."""
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return [ns / 1000 for ns in samples]


def measure(call: Call, count: int) -> dict[str, float]:
    """A warm-up, then `count` timed calls with garbage collection off: p50 and p99."""
    timed(call, WARMUP)
    gc.collect()
    gc.disable()
    try:
        samples = timed(call, count)
    finally:
        gc.enable()
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99)}


def bench_store(store: str, echo_address: str, calls: int, runs: int) -> list[Figure]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp,
        store_env(store, Path(tmp)) as env,
        ServerProcess(env) as server,
    ):
        key, import_name = set_up(server)
        with server.client(key) as client, Client(echo_address, key) as echo_client:
            measured = service_calls(client, import_name)
            # Each call's echo carries as many bytes as the call's response.
            echoes = {
                name: echo_call(echo_client, b"x" * call().ByteSize())  # type: ignore[attr-defined]
                for name, call in measured.items()
            }
            results: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {
                name: [] for name in measured
            }
            for run in range(runs):
                log(f"latency {store}: run {run + 1} of {runs}")
                for name, call in measured.items():
                    echo = measure(echoes[name], calls)
                    results[name].append((measure(call, calls), echo))
    figures = []
    for name, pairs in results.items():
        for q in ("p50", "p99"):
            ratios = [call[q] / echo[q] for call, echo in pairs]
            figures.append(
                Figure(
                    NAME,
                    f"{name} {q}",
                    store,
                    statistics.median(call[q] for call, _ in pairs),
                    "µs",
                    f"echo RPC {q}",
                    statistics.median(echo[q] for _, echo in pairs),
                    (
                        Target.ratio_at_most(P50_TARGET[store])
                        if q == "p50" and name == "GetImport"
                        else None
                    ),
                    {"runs": runs, "calls": calls, "warmup": WARMUP, "run_ratios": ratios},
                )
            )
    return figures


def run(args: argparse.Namespace) -> list[Figure]:
    calls = args.latency_calls or (300 if args.quick else 1000)
    runs = args.latency_runs or (1 if args.quick else 2)
    with echo_server() as echo_address:
        return [f for store in args.stores for f in bench_store(store, echo_address, calls, runs)]


if __name__ == "__main__":
    sys.exit(cli.main(sys.modules[__name__], "python -m bench.latency", sys.argv[1:]))

"""Latency of the service's calls relative to a bare gRPC round trip on the same machine.

Absolute latencies depend on the machine and on whatever else it is doing, so this benchmark
reports each figure next to a baseline measured side by side and judges the ratio, not the
microseconds:

- Baseline: a bare grpcio echo server (bench/echo_server.py) in a subprocess, with the real
  server's thread pool but no protobuf, interceptors or storage. The client sends it raw bytes of
  the size of a real GetImport response.
- Target: the real server (`python -m service.cli serve`, via tests.support.ServerProcess) in a
  subprocess, once on SQLite and once on PostgreSQL (a schema of its own, dropped afterwards).
  It holds an account "bench" with 20 imports of mixed services; the calls use the account's key.
- Calls: GetImport, ListImports (page_size=20) and UpdateImport (tags alternating between two
  values, no etag), each sequential over one channel. Both clients go through the same
  tests.support client (bearer token and deadline interceptor), so client-side costs cancel.
- For each call, the echo baseline runs immediately before it: 300 warm-up calls, then --calls
  timed calls (garbage collection off while timing), for the echo and then for the call. The
  ratio of the call's p50 (p99) to that echo's p50 (p99) is the figure of merit.
  Blocks, not call-by-call alternation: alternating, each echo call overlaps the work the
  service does after answering (projector, database writes) and, on a small machine, the
  baseline then rises with the cost of the call it is compared with, which hides regressions
  (measured on 2 CPUs: echo p50 330 -> 620 us next to SQLite UpdateImport, ratio 11 -> 5.6).
- All of that is repeated --runs times; the table shows the median of the runs for every column,
  and the lowest and highest ratio of the runs. p99 (the 20th slowest of 2,000 calls) is much
  noisier than p50, on both sides of the ratio: judge regressions by the p50 ratio first.

Prints a table and writes the same figures, with every run's, to bench/results/latency-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from autoimport.v1 import accounts_pb2, imports_pb2
from bench.echo_server import PATH as ECHO_PATH
from tests.support import PG_URL, Client, ServerProcess, postgres_error, store_env

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
STORES = ("sqlite", "postgres")
WARMUP = 300
ACCOUNT = "bench"
IMPORT_COUNT = 20
QUANTILES = ("p50", "p99")

Call = Callable[[], object]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per measurement")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; the median is reported")
    parser.add_argument(
        "--stores", default=",".join(STORES), help="comma-separated, of: sqlite, postgres"
    )
    args = parser.parse_args()
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if unknown := set(args.stores) - set(STORES):
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    if args.calls < 100 or args.runs < 1:
        parser.error("--calls must be at least 100 and --runs at least 1")
    return args


# -- processes and stores -------------------------------------------------------------------


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
        process.stdin.close()  # tells it to stop
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the account, its imports, and the calls --------------------------------------------------


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


def set_up(server: ServerProcess) -> tuple[str, list[str]]:
    """Creates the account, its API key and its imports; returns the key and the import names."""
    with server.client(server.admin_token) as admin:
        admin.accounts.UpsertAccount(
            accounts_pb2.UpsertAccountRequest(
                account=accounts_pb2.Account(account_id=ACCOUNT, plan="lite", contact_limit=1000)
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
    return key, names


def service_calls(client: Client, names: list[str]) -> dict[str, Call]:
    """The measured calls. GetImport reads an import that UpdateImport never changes."""
    get = imports_pb2.GetImportRequest(name=names[0])
    listing = imports_pb2.ListImportsRequest(account_id=ACCOUNT, page_size=20)
    updates = itertools.cycle(
        imports_pb2.UpdateImportRequest(auto_import=imports_pb2.AutoImport(name=names[1], tags=[t]))
        for t in ("bench-a", "bench-b")
    )
    return {
        "GetImport": lambda: client.imports.GetImport(get),
        "ListImports": lambda: client.imports.ListImports(listing),
        "UpdateImport": lambda: client.imports.UpdateImport(next(updates)),
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
    """A warm-up, then `count` timed calls with garbage collection off."""
    timed(call, WARMUP)
    gc.collect()
    gc.disable()
    try:
        samples = timed(call, count)
    finally:
        gc.enable()
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99)}


def run_once(echo: Call, calls: dict[str, Call], count: int) -> dict[str, Any]:
    """Each call, right after an echo baseline of its own."""
    results = {}
    for name, call in calls.items():
        baseline = measure(echo, count)
        measured = measure(call, count)
        ratio = {q: measured[q] / baseline[q] for q in QUANTILES}
        results[name] = {"echo": baseline, "call": measured, "ratio": ratio}
    return results


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per call, the median over the runs of every figure, and the range of the ratios."""
    summary = {}
    for name in runs[0]:
        rows = [run[name] for run in runs]
        figures: dict[str, Any] = {}
        for q in QUANTILES:
            ratios = [row["ratio"][q] for row in rows]
            figures[f"call_{q}_us"] = statistics.median(row["call"][q] for row in rows)
            figures[f"echo_{q}_us"] = statistics.median(row["echo"][q] for row in rows)
            figures[f"ratio_{q}"] = statistics.median(ratios)
            figures[f"ratio_{q}_range"] = [min(ratios), max(ratios)]
        summary[name] = figures
    return summary


def bench_store(
    store: str, tmp: Path, echo_address: str, args: argparse.Namespace
) -> dict[str, Any]:
    with store_env(store, tmp) as env, ServerProcess(env) as server:
        key, names = set_up(server)
        with server.client(key) as client, Client(echo_address, key) as echo_client:
            calls = service_calls(client, names)
            sizes = {
                "GetImport": client.imports.GetImport(
                    imports_pb2.GetImportRequest(name=names[0])
                ).ByteSize(),
                "ListImports": client.imports.ListImports(
                    imports_pb2.ListImportsRequest(account_id=ACCOUNT, page_size=20)
                ).ByteSize(),
            }
            echo = echo_call(echo_client, b"x" * sizes["GetImport"])
            runs = []
            for i in range(args.runs):
                log(f"{store}: run {i + 1} of {args.runs}")
                runs.append(run_once(echo, calls, args.calls))
    return {"response_bytes": sizes, "summary": summarize(runs), "runs": runs}


# -- reporting ------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


COLUMNS = (  # heading, width, summary key, decimals
    ("p50 µs", 9, "call_p50_us", 0),
    ("p99 µs", 9, "call_p99_us", 0),
    ("echo p50", 10, "echo_p50_us", 0),
    ("echo p99", 10, "echo_p99_us", 0),
    ("p50 ratio", 11, "ratio_p50", 1),
    ("p99 ratio", 11, "ratio_p99", 1),
)


def table(report: dict[str, Any]) -> str:
    header = f"{'store':<9}{'call':<14}" + "".join(f"{h:>{w}}" for h, w, _, _ in COLUMNS)
    header += f"{'p50 range':>12}{'p99 range':>12}"
    lines = [
        f"{report['runs']} runs of {report['calls']} calls (after {WARMUP} warm-up calls) each; "
        f"medians of the runs. Echo payload: {report['echo_payload_bytes']} bytes, "
        "the size of a GetImport response; ratio = call / echo.",
        header,
        "-" * len(header),
    ]
    for store, result in report["stores"].items():
        if "skipped" in result:
            lines.append(f"{store:<9}skipped: {result['skipped']}")
        for name, figures in result.get("summary", {}).items():
            lines.append(f"{store:<9}{name:<14}{_cells(figures)}")
    return "\n".join(lines)


def _cells(figures: dict[str, Any]) -> str:
    cells = "".join(f"{figures[key]:>{w}.{d}f}" for _, w, key, d in COLUMNS)
    for q in QUANTILES:
        low, high = figures[f"ratio_{q}_range"]
        cells += f"{f'{low:.1f}-{high:.1f}':>12}"
    return cells


def environment() -> dict[str, Any]:
    def git(*argv: str) -> str:  # read-only queries
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
    }


def write_json(report: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"latency-{report['started'].replace(':', '').replace('-', '')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def main() -> None:
    args = parse_args()
    report: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "calls": args.calls,
        "runs": args.runs,
        "warmup": WARMUP,
        "method": __doc__,
        "environment": environment(),
        "stores": {},
    }
    with echo_server() as echo_address, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for store in args.stores:
            if store == "postgres" and (error := postgres_error()):
                note = f"PostgreSQL is not reachable at {PG_URL} ({error})"
                print(f"note: skipping PostgreSQL: {note}", flush=True)
                report["stores"][store] = {"skipped": note}
                continue
            report["stores"][store] = bench_store(store, Path(tmp), echo_address, args)
    measured = [r for r in report["stores"].values() if "response_bytes" in r]
    report["echo_payload_bytes"] = measured[0]["response_bytes"]["GetImport"] if measured else 0
    print(table(report))
    print(f"\nwritten to {write_json(report).relative_to(ROOT)}")


if __name__ == "__main__":
    main()

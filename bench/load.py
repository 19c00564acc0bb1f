"""Load and soak: concurrent clients doing what the service's users do, against one real server,
then the invariants over the whole store (tests/invariants.py). Not a unit test, not part of
`make bench` (it has no baseline: it judges errors and promises, not speed).

    python -m bench.load [--store sqlite|postgres] [--clients 8] [--requests 3000]
    python -m bench.load --soak 600 [--sample 10]

Each client holds one account's API key and sends, at random (seeded: --seed), ListContacts
(35%), GetImport (25%), UpdateImport of its tags (15%), ImportCsv of 100 rows drawn from the
account's pool of 3,000 emails, 5% invalid (10%), TriggerSync (10%) and UnsubscribeContact of
an email it imported (5%). The accounts' imports read emulated Shopify, HubSpot and Google
Contacts accounts (bench/scheduler.py's emulators) of 300 contacts each, 10 of which change
every 5 s; the first account's contact limit (500) is reached during the run. Refusals the
contract gives under load are counted apart from errors: TriggerSync's RESOURCE_EXHAUSTED
(AUTOIMPORT_MAX_SYNCS in flight), UnsubscribeContact's NOT_FOUND (not imported yet).

It prints throughput, p50 and p99 per call, every error, and then the promises broken (none
expected); with --soak, the server's and its projector's memory and open files over time,
which must stay flat: each is judged "flat" or "GROWING" from the second quarter of the soak
(after the warm-up) to its last (Flatness). Exits 1 on any error or broken promise.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from autoimport.v1 import accounts_pb2, contacts_pb2, contacts_pb2_grpc, imports_pb2
from bench.report import log
from bench.scheduler import emulators, import_of
from service.config import Settings
from tests.invariants import Expected, broken_promises
from tests.support import Client, ServerProcess, new_account, projector_pid, store_env

ACCOUNTS = 4
IMPORTS_PER_ACCOUNT = 2
CONTACTS_AT_SOURCE = 300
LIMITED = 500  # the first account's contact limit
POOL = 3000  # emails an account's CSV files draw from
CSV_ROWS = 100
MIX = {
    "ListContacts": 35,
    "GetImport": 25,
    "UpdateImport": 15,
    "ImportCsv": 10,
    "TriggerSync": 10,
    "UnsubscribeContact": 5,
}
REFUSALS = {
    ("TriggerSync", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ("UnsubscribeContact", grpc.StatusCode.NOT_FOUND),
}


@dataclass
class Account:
    account_id: str
    key: str
    imports: list[str]
    limit: int
    sent: set[str] = field(default_factory=set)  # valid emails of CSV files it reported
    unsubscribed: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str], str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: str, seconds: float, error: grpc.RpcError | None) -> None:
        with self.lock:
            if error is None:
                self.latencies[call].append(seconds)
                return
            key = (call, error.code().name)
            if (call, error.code()) in REFUSALS:
                self.refused[key] += 1
            else:
                self.errors[key] += 1
                self.examples.setdefault(key, error.details() or "")

    @property
    def done(self) -> int:
        return (
            sum(map(len, self.latencies.values()))
            + sum(self.refused.values())
            + sum(self.errors.values())
        )


def set_up(admin: Client, sources: list[dict[str, str]]) -> list[Account]:
    accounts = []
    for n in range(ACCOUNTS):
        limit = LIMITED if n == 0 else 10**6
        account_id = new_account(admin, limit)
        key = admin.accounts.CreateApiKey(accounts_pb2.CreateApiKeyRequest(account_id=account_id))
        names = []
        for source in sources[n * IMPORTS_PER_ACCOUNT : (n + 1) * IMPORTS_PER_ACCOUNT]:
            created = admin.imports.CreateImport(
                imports_pb2.CreateImportRequest(
                    account_id=account_id, auto_import=import_of(source)
                )
            )
            names.append(created.name)
        accounts.append(Account(account_id, key.key, names, limit))
    return accounts


def csv_file(rng: random.Random, account: Account) -> tuple[bytes, set[str]]:
    valid: set[str] = set()
    lines = ["email,first_name,last_name"]
    for n in rng.sample(range(POOL), CSV_ROWS):
        if rng.random() < 0.05:
            lines.append(f"not-an-email-{n},Bad,Row")
            continue
        email = f"p{n}@{account.account_id}.example.com"
        valid.add(email)
        lines.append(f"{email},First{rng.randrange(9)},Last{n}")
    return ("\n".join(lines) + "\n").encode(), valid


def one_call(
    rng: random.Random, client: Client, account: Account
) -> tuple[str, Callable[[], None]]:
    contacts = contacts_pb2_grpc.ContactServiceStub(client.channel)
    call = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    name = rng.choice(account.imports)
    if call == "ListContacts":
        return call, lambda: contacts.ListContacts(
            contacts_pb2.ListContactsRequest(account_id=account.account_id, page_size=100)
        )
    if call == "GetImport":
        return call, lambda: client.imports.GetImport(imports_pb2.GetImportRequest(name=name))
    if call == "UpdateImport":
        tags = [f"load-{rng.randrange(5)}"]
        return call, lambda: client.imports.UpdateImport(
            imports_pb2.UpdateImportRequest(
                auto_import=imports_pb2.AutoImport(name=name, tags=tags)
            )
        )
    if call == "TriggerSync":
        return call, lambda: client.imports.TriggerSync(
            imports_pb2.TriggerSyncRequest(name=name), timeout=120
        )
    if call == "ImportCsv":
        data, valid = csv_file(rng, account)

        def upload() -> None:
            options = contacts_pb2.CsvImportOptions(account_id=account.account_id)
            contacts.ImportCsv(
                iter(
                    [
                        contacts_pb2.ImportCsvRequest(options=options),
                        contacts_pb2.ImportCsvRequest(chunk=data),
                    ]
                ),
                timeout=120,
            )
            with account.lock:
                account.sent |= valid

        return call, upload
    with account.lock:
        email = rng.choice(sorted(account.sent)) if account.sent else "nobody@example.com"

    def unsubscribe() -> None:
        contacts.UnsubscribeContact(
            contacts_pb2.UnsubscribeContactRequest(account_id=account.account_id, email=email)
        )
        with account.lock:
            account.unsubscribed.add(email)

    return "UnsubscribeContact", unsubscribe


def client_loop(
    server: ServerProcess,
    account: Account,
    seed: int,
    tally: Tally,
    keep_going: Callable[[], bool],
) -> None:
    rng = random.Random(seed)
    with server.client(account.key) as client:
        while keep_going():
            call, send = one_call(rng, client, account)
            started = time.perf_counter()
            try:
                send()
            except grpc.RpcError as error:
                tally.record(call, time.perf_counter() - started, error)
            else:
                tally.record(call, time.perf_counter() - started, None)


def resources(pid: int) -> tuple[float, int]:
    """(resident MiB, open file descriptors) of a process."""
    rss = next(
        int(line.split()[1]) / 1024
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))


@contextlib.contextmanager
def changing(change: Callable[[int], None], every: float) -> Iterator[None]:
    """10 contacts of every emulated account change every `every` seconds meanwhile."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            change(10)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def report(tally: Tally, seconds: float, clients: int) -> None:
    print(
        f"{tally.done:,} requests from {clients} concurrent clients in {seconds:.1f} s: "
        f"{tally.done / seconds:.1f} a second"
    )
    print(f"{'call':<20} {'ok':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for call in MIX:
        samples = tally.latencies.get(call, [])
        if samples:
            p50, p99 = statistics.median(samples) * 1000, percentile(samples, 99) * 1000
            print(f"{call:<20} {len(samples):>7,} {p50:>8.1f} {p99:>8.1f}")
    for (call, code), n in sorted(tally.refused.items()):
        print(f"refused (the contract's answer under load): {call} {code} x {n}")
    for (call, code), n in sorted(tally.errors.items()):
        print(f"ERROR {call} {code} x {n}: {tally.examples[(call, code)][:200]}")
    print(f"errors: {sum(tally.errors.values())}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--soak", type=float, default=0, help="run for this many seconds instead")
    parser.add_argument("--sample", type=float, default=10, help="soak: seconds between samples")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory() as folder,
        store_env(args.store, Path(folder)) as env,
        emulators(ACCOUNTS * IMPORTS_PER_ACCOUNT, CONTACTS_AT_SOURCE) as source,
        ServerProcess({**env, **source.env}) as server,
        server.client(server.admin_token) as admin,
    ):
        accounts = set_up(admin, source.accounts)
        tally = Tally()
        deadline = time.monotonic() + args.soak

        def keep_going() -> bool:
            if args.soak:
                return time.monotonic() < deadline
            return tally.done < args.requests

        assert server.process is not None
        pids = {"server": server.process.pid, "projector": projector_pid(server)}
        samples: Samples = []
        log(f"load: {args.clients} clients on {args.store}, {len(accounts)} accounts")
        started = time.perf_counter()
        threads = [
            threading.Thread(
                target=client_loop,
                args=(server, accounts[n % len(accounts)], args.seed * 1000 + n, tally, keep_going),
            )
            for n in range(args.clients)
        ]
        with changing(source.change, every=5):
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                samples.append(
                    (time.perf_counter() - started, {k: resources(p) for k, p in pids.items()})
                )
                for thread in threads:
                    thread.join(timeout=args.sample / len(threads))
        seconds = time.perf_counter() - started
        report(tally, seconds, args.clients)
        server_errors = [line for line in server.output if '"level": "ERROR"' in line]
        print(f"server log: {len(server_errors)} ERROR lines")
        for line in server_errors[:3]:
            print(f"  {line.strip()[:3000]}")
        if args.soak:
            print_soak(samples)
        broken = broken_promises(
            Settings.from_env(server.env),
            admin,
            [
                Expected(
                    a.account_id,
                    present=a.sent if a.limit > POOL + CONTACTS_AT_SOURCE * 2 else set(),
                    unsubscribed=a.unsubscribed,
                )
                for a in accounts
            ],
        )
    for promise in broken:
        print(f"BROKEN {promise}")
    print(f"promises broken: {len(broken)}")
    return 1 if broken or tally.errors else 0


Samples = list[tuple[float, dict[str, tuple[float, int]]]]
# How much a process may grow from the second quarter of a soak to its last and still be flat:
# resident memory read every few seconds moves by a few MiB either way (allocations in flight).
FLAT_MIB = 3.0
FLAT_FRACTION = 0.03
FLAT_FDS = 2


@dataclass(frozen=True)
class Flatness:
    """A process's growth after the warm-up: the medians of the soak's second quarter and of its
    last, the trend (least squares) over both halves after the first quarter, and the fds."""

    process: str
    second_quarter_mib: float
    last_quarter_mib: float
    mib_per_minute: float
    second_quarter_fds: int
    last_quarter_fds: int

    @property
    def growth_mib(self) -> float:
        return self.last_quarter_mib - self.second_quarter_mib

    @property
    def flat(self) -> bool:
        allowed = max(FLAT_MIB, FLAT_FRACTION * self.second_quarter_mib)
        return (
            self.growth_mib <= allowed
            and self.last_quarter_fds - self.second_quarter_fds <= FLAT_FDS
        )

    def line(self) -> str:
        return (
            f"{self.process}: {'flat' if self.flat else 'GROWING'}: second quarter "
            f"{self.second_quarter_mib:.1f} MiB -> last quarter {self.last_quarter_mib:.1f} MiB "
            f"(medians, {self.growth_mib:+.1f} MiB; trend {self.mib_per_minute:+.2f} MiB/min), "
            f"open files {self.second_quarter_fds} -> {self.last_quarter_fds} (most)"
        )


def flatness(samples: Samples, process: str) -> Flatness:
    """How `process` grew after the first quarter of the soak (its warm-up: caches filling,
    connections opening). A leak grows on; a warm-up has stopped by the second quarter."""
    end = samples[-1][0]

    def within(start: float, stop: float) -> list[tuple[float, float, int]]:
        found = [(at, *by[process]) for at, by in samples if start * end <= at <= stop * end]
        return found or [(samples[-1][0], *samples[-1][1][process])]

    second, last, after = within(0.25, 0.5), within(0.75, 1.0), within(0.25, 1.0)
    times, rss = [a for a, _, _ in after], [r for _, r, _ in after]
    mean_t, mean_r = statistics.fmean(times), statistics.fmean(rss)
    spread = sum((t - mean_t) ** 2 for t in times)
    slope = (
        sum((t - mean_t) * (r - mean_r) for t, r in zip(times, rss, strict=True)) / spread
        if spread
        else 0
    )
    return Flatness(
        process,
        statistics.median(r for _, r, _ in second),
        statistics.median(r for _, r, _ in last),
        slope * 60,
        max(f for _, _, f in second),
        max(f for _, _, f in last),
    )


def print_soak(samples: Samples) -> None:
    print(f"{'seconds':>8} {'server MiB':>11} {'fds':>5} {'projector MiB':>14} {'fds':>5}")
    for at, by in samples:
        (s_rss, s_fds), (p_rss, p_fds) = by["server"], by["projector"]
        print(f"{at:>8.0f} {s_rss:>11.1f} {s_fds:>5} {p_rss:>14.1f} {p_fds:>5}")
    start, quarter, end = samples[0][1], samples[len(samples) // 4][1], samples[-1][1]
    for process in ("server", "projector"):
        print(
            f"{process}: {start[process][0]:.1f} MiB at start, {quarter[process][0]:.1f} after "
            f"the first quarter, {end[process][0]:.1f} at the end"
        )
    for process in ("server", "projector"):
        print(flatness(samples, process).line())


if __name__ == "__main__":
    sys.exit(main())

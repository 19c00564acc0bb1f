"""ImportCsv of 100,000 generated contacts until every one is listed, next to `sqlite-utils
insert --csv` of the same file and to a bare floor; the server's peak memory.

Method: a generated file (email, first name, last name, City; unique valid emails) is written
once per size. Baselines, measured once per run on that file:
- `sqlite-utils insert DB contacts FILE --csv`: the same rows into one SQLite table, no
  validation, no events, no read model (the tool a person would otherwise use);
- the bare floor, in this process: the file read with `csv`, each email validated and
  normalized with email_validator.validate_email(check_deliverability=False), the rows inserted
  with one sqlite3 `executemany` into one table keyed by email (INSERT OR IGNORE: one row per
  email), committed once.
Then, per store, a fresh real server (as the tests start one) with an account with room for the
rows: the file is streamed in 64 KiB chunks and timed until ImportCsv's report comes back, then
until ListContacts counts every contact (the read model caught up). The server's peak resident
memory (VmHWM) is read when it has started and after the import.

With --long, the same for 1,000,000 rows on the main store (the first of --stores): its time, and
its peak memory next to the 100,000-row import's (target: within 1.5 x).
Targets (issue 11): at most 1.0 x sqlite-utils, 2 x the floor, read model within 1 s of the
report.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from email_validator import EmailNotValidError, validate_email

from autoimport.v1 import accounts_pb2 as apb
from autoimport.v1 import contacts_pb2 as cpb
from autoimport.v1 import contacts_pb2_grpc
from bench import cli
from bench.report import Figure, Target, log
from tests.support import ServerProcess, store_env

NAME = "csv"
CHUNK = 64 * 1024
ROWS = 100_000
LONG_ROWS = 1_000_000
QUICK_ROWS = 5_000
SQLITE_UTILS = "sqlite-utils insert --csv"
FLOOR = "validate_email + sqlite3.executemany"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(NAME)
    group.add_argument("--csv-rows", type=int, help=f"rows of the import ({ROWS:,})")


def write_file(path: Path, rows: int) -> None:
    with path.open("w") as f:
        f.write("email,first name,last name,City\n")
        for n in range(rows):
            f.write(f"person{n:07d}@example.com,First{n},Last{n},City {n % 50}\n")


def chunks_of(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def time_sqlite_utils(path: Path, folder: Path) -> float:
    command = [
        str(Path(sys.executable).with_name("sqlite-utils")),
        *("insert", str(folder / f"sqlite-utils-{path.stem}.db"), "contacts", str(path), "--csv"),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def time_floor(path: Path, folder: Path) -> float:
    """The bare floor: read, validate each email, one executemany, one commit."""
    started = time.perf_counter()
    rows = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for email, first, last, city in reader:
            try:
                normalized = validate_email(email, check_deliverability=False).normalized.lower()
            except EmailNotValidError:
                continue
            rows.append((normalized, first, last, city))
    db = sqlite3.connect(folder / f"floor-{path.stem}.db")
    try:
        db.execute(
            "CREATE TABLE contacts (email TEXT PRIMARY KEY, first_name TEXT, last_name TEXT,"
            " city TEXT)"
        )
        db.executemany("INSERT OR IGNORE INTO contacts VALUES (?, ?, ?, ?)", rows)
        db.commit()
    finally:
        db.close()
    return time.perf_counter() - started


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


@dataclass
class Import:
    reported: float  # seconds until ImportCsv's report
    listed: float  # seconds until ListContacts counted every contact
    rss_started: float  # MiB: the server's peak once serving, before the import
    rss_peak: float  # MiB: its peak after the import


def measure(store: str, path: Path, rows: int) -> Import:
    with (
        tempfile.TemporaryDirectory(prefix="bench-csv-") as folder,
        store_env(store, Path(folder)) as env,
        ServerProcess(env) as server,
        server.client(server.admin_token) as admin,
    ):
        assert server.process is not None
        account_id = "bench-csv"
        admin.accounts.UpsertAccount(
            apb.UpsertAccountRequest(
                account=apb.Account(account_id=account_id, plan="bulk", contact_limit=rows * 2)
            )
        )
        stub = contacts_pb2_grpc.ContactServiceStub(admin.channel)

        def requests() -> Iterator[cpb.ImportCsvRequest]:
            yield cpb.ImportCsvRequest(options=cpb.CsvImportOptions(account_id=account_id))
            for chunk in chunks_of(path):
                yield cpb.ImportCsvRequest(chunk=chunk)

        rss_started = peak_rss_mib(server.process.pid)
        started = time.perf_counter()
        report = stub.ImportCsv(requests(), timeout=3600)
        reported = time.perf_counter() - started
        if report.added != rows:
            raise RuntimeError(f"ImportCsv added {report.added} of {rows} rows: {report}")
        while True:
            try:
                page = stub.ListContacts(
                    cpb.ListContactsRequest(account_id=account_id, page_size=1), timeout=60
                )
            except grpc.RpcError as e:
                if e.code() is not grpc.StatusCode.UNAVAILABLE:  # still catching up
                    raise
                continue
            if page.total_size == rows:
                break
        listed = time.perf_counter() - started
        result = Import(reported, listed, rss_started, peak_rss_mib(server.process.pid))
    log(
        f"csv {store}: {rows:,} rows reported after {reported:.1f} s, listed after "
        f"{listed:.1f} s, peak RSS {result.rss_peak:.0f} MiB"
    )
    return result


def time_figures(
    store: str, rows: int, done: Import, utils: float, floor: float | None
) -> list[Figure]:
    work = f"ImportCsv {rows:,} rows"
    details = {"rows": rows, "rows_per_second": rows / done.listed}
    figures = [
        Figure(
            NAME,
            f"{work}, until its report",
            store,
            done.reported,
            "s",
            SQLITE_UTILS,
            utils,
            Target.ratio_at_most(1.0),
            details,
        ),
        Figure(
            NAME,
            f"{work}, until all listed",
            store,
            done.listed,
            "s",
            SQLITE_UTILS,
            utils,
            Target.ratio_at_most(1.0),
            details,
        ),
    ]
    if floor is not None:
        figures.append(
            Figure(
                NAME,
                f"{work}, until all listed",
                store,
                done.listed,
                "s",
                FLOOR,
                floor,
                Target.ratio_at_most(2.0),
                details,
            )
        )
    figures.append(
        Figure(
            NAME,
            f"{work}, read model behind the report",
            store,
            done.listed - done.reported,
            "s",
            target=Target.value_at_most(1.0),
        )
    )
    return figures


def run(args: argparse.Namespace) -> list[Figure]:
    rows = args.csv_rows or (QUICK_ROWS if args.quick else ROWS)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-csv-files-") as tmp:
        folder = Path(tmp)
        path = folder / f"contacts-{rows}.csv"
        write_file(path, rows)
        utils = time_sqlite_utils(path, folder)
        floor = time_floor(path, folder)
        log(f"csv: {rows:,} rows: sqlite-utils {utils:.2f} s, floor {floor:.2f} s")
        peaks = {}
        for store in args.stores:
            done = measure(store, path, rows)
            peaks[store] = done.rss_peak
            figures += time_figures(store, rows, done, utils, floor)
            figures.append(
                Figure(
                    NAME,
                    f"server peak RSS, {rows:,}-row import",
                    store,
                    done.rss_peak,
                    "MiB",
                    "server peak RSS once started",
                    done.rss_started,
                )
            )
        if args.long:
            store = args.stores[0]
            path.unlink()
            long_path = folder / f"contacts-{LONG_ROWS}.csv"
            write_file(long_path, LONG_ROWS)
            long_utils = time_sqlite_utils(long_path, folder)
            log(f"csv: {LONG_ROWS:,} rows: sqlite-utils {long_utils:.2f} s")
            done = measure(store, long_path, LONG_ROWS)
            figures += time_figures(store, LONG_ROWS, done, long_utils, None)
            figures.append(
                Figure(
                    NAME,
                    f"server peak RSS, {LONG_ROWS:,}-row import",
                    store,
                    done.rss_peak,
                    "MiB",
                    f"the {rows:,}-row import's",
                    peaks[store],
                    Target.ratio_at_most(1.5),
                )
            )
    return figures


if __name__ == "__main__":
    sys.exit(cli.main(sys.modules[__name__], "python -m bench.csv_import", sys.argv[1:]))

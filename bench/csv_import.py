"""Time of a 100,000-row CSV import over gRPC, on SQLite and on PostgreSQL, next to
`sqlite-utils insert --csv` of the same file.

`python -m bench.csv_import [--rows N] [--store sqlite|postgres]...`: writes a generated file,
then times `sqlite-utils insert DB contacts FILE --csv` on it (the baseline: the same rows into
one SQLite table, no validation, no events, no read model), then, per store, starts a real
server (as the tests do), creates an account with room for the rows, streams the same file in
64 KiB chunks, and prints: the time of the ImportCsv call and its ratio to the baseline, the rows
per second, the time until the read model lists every contact (the projector catching up), and
the server's peak resident memory before and after the import.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from autoimport.v1 import accounts_pb2 as apb
from autoimport.v1 import contacts_pb2 as cpb
from autoimport.v1 import contacts_pb2_grpc
from tests.support import ServerProcess, postgres_error, store_env

CHUNK = 64 * 1024


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
    """The baseline: the same file into one SQLite table with sqlite-utils."""
    command = [
        str(Path(sys.executable).with_name("sqlite-utils")),
        "insert",
        str(folder / "baseline.db"),
        "contacts",
        str(path),
        "--csv",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(store: str, path: Path, rows: int, baseline: float) -> None:
    with (
        tempfile.TemporaryDirectory() as folder,
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

        rss_before = peak_rss_mib(server.process.pid)
        started = time.perf_counter()
        report = stub.ImportCsv(requests(), timeout=3600)
        imported = time.perf_counter() - started
        rss_after = peak_rss_mib(server.process.pid)
        assert report.added == rows, report
        while True:
            try:
                page = stub.ListContacts(
                    cpb.ListContactsRequest(account_id=account_id, page_size=1), timeout=60
                )
            except grpc.RpcError as e:
                if e.code() is not grpc.StatusCode.UNAVAILABLE:
                    raise
                continue
            if page.total_size == rows:
                break
        listed = time.perf_counter() - started
        print(
            f"{store:>8}: {rows:,} rows imported in {imported:.1f} s"
            f" ({rows / imported:,.0f} rows/s, {imported / baseline:.1f} x sqlite-utils);"
            f" all listed after {listed:.1f} s;"
            f" server peak RSS {rss_before:.0f} MiB before,"
            f" {rss_after:.0f} MiB after",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--store", action="append", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "contacts.csv"
        write_file(path, args.rows)
        baseline = time_sqlite_utils(path, Path(folder))
        print(f"sqlite-utils insert --csv: {args.rows:,} rows in {baseline:.2f} s", flush=True)
        for store in args.store or ["sqlite", "postgres"]:
            if store == "postgres" and (error := postgres_error()):
                print(f"postgres: skipped ({error})")
                continue
            measure(store, path, args.rows, baseline)


if __name__ == "__main__":
    main()

"""Time of a 100,000-row CSV import over gRPC, on SQLite and on PostgreSQL.

`python -m bench.csv_import [--rows N] [--store sqlite|postgres]...`: starts a real server (as
the tests do), creates an account with room for the rows, streams a generated file in 64 KiB
chunks (made as it is sent), and prints, per store: the time of the ImportCsv call, the rows per
second, the time until the read model lists every contact (the projector catching up), and the
server's peak resident memory before and after the import.
"""

from __future__ import annotations

import argparse
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


def generated(rows: int) -> Iterator[bytes]:
    buffer = bytearray(b"email,first name,last name,City\n")
    for n in range(rows):
        buffer += f"person{n:07d}@example.com,First{n},Last{n},City {n % 50}\n".encode()
        if len(buffer) >= CHUNK:
            yield bytes(buffer[:CHUNK])
            del buffer[:CHUNK]
    yield bytes(buffer)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(store: str, rows: int) -> None:
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
            for chunk in generated(rows):
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
            f" ({rows / imported:,.0f} rows/s); all listed after {listed:.1f} s;"
            f" server peak RSS {rss_before:.0f} MiB before,"
            f" {rss_after:.0f} MiB after",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--store", action="append", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    for store in args.store or ["sqlite", "postgres"]:
        if store == "postgres" and (error := postgres_error()):
            print(f"postgres: skipped ({error})")
            continue
        measure(store, args.rows)


if __name__ == "__main__":
    main()

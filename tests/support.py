"""Test helpers: a server in a subprocess, and a client with stubs that send a token."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg
from eventsourcing.cryptography import AESCipher
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from autoimport.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    contacts_pb2,
    contacts_pb2_grpc,
    imports_pb2,
    imports_pb2_grpc,
)

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20.0
PG_URL = os.environ.get("AUTOIMPORT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_error() -> str | None:
    """Why the PostgreSQL of PG_URL cannot be used, on one line; None when it can."""
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return " ".join(str(e).split())
    return None


@contextlib.contextmanager
def store_env(store: str, data_dir: Path) -> Iterator[dict[str, str]]:
    """A server's environment on "sqlite" or "postgres"; on PostgreSQL in a schema of its own,
    dropped afterwards, with the cipher key set as replicas of a deployment share it."""
    env = {"AUTOIMPORT_DATA_DIR": str(data_dir / "data"), "AUTOIMPORT_DATABASE_URL": ""}
    if store == "sqlite":
        yield env
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield {
            **env,
            "AUTOIMPORT_DATABASE_URL": PG_URL,
            "AUTOIMPORT_DATABASE_SCHEMA": schema,
            "AUTOIMPORT_CIPHER_KEY": AESCipher.create_key(num_bytes=32),
        }
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


class _Token(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` and a deadline to every call."""

    def __init__(self, token: str | None):
        self._token = token

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or [])
        if self._token is not None:
            metadata.append(("authorization", f"Bearer {self._token}"))
        return details._replace(metadata=metadata, timeout=details.timeout or TIMEOUT)

    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(details), request)

    intercept_unary_stream = intercept_unary_unary
    intercept_stream_unary = intercept_unary_unary
    intercept_stream_stream = intercept_unary_unary


class Client:
    def __init__(self, address: str, token: str | None):
        self.channel = grpc.intercept_channel(grpc.insecure_channel(address), _Token(token))
        self.imports = imports_pb2_grpc.AutoImportServiceStub(self.channel)
        self.accounts = accounts_pb2_grpc.AccountServiceStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()


class ServerProcess:
    """`autoimport serve` in a subprocess on a free loopback port, with the given environment."""

    def __init__(self, env: dict[str, str], module: str = "service.cli serve"):
        self.env = {
            **os.environ,
            "AUTOIMPORT_LISTEN": "127.0.0.1:0",
            "AUTOIMPORT_METRICS_LISTEN": "127.0.0.1:0",  # servers side by side: one port each
            "AUTOIMPORT_ADMIN_TOKEN": "adm_test_token",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.admin_token = self.env["AUTOIMPORT_ADMIN_TOKEN"]
        self.command = [sys.executable, "-m", *module.split()]
        self.process: subprocess.Popen[str] | None = None
        self.address = ""
        self.output: list[str] = []

    def start(self) -> ServerProcess:
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if match := re.search(r"listening on (\S+)", line):
                self.address = match.group(1)
                break
        if not self.address:
            self.process.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        # Keep draining its output so that the pipe never fills and blocks the server.
        import threading

        threading.Thread(target=self._drain, daemon=True).start()
        self.wait_serving()
        return self

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def channel(self) -> grpc.Channel:
        """A channel to the server: TLS trusting its certificate when it serves TLS."""
        cert = self.env.get("AUTOIMPORT_TLS_CERT")
        if not cert:
            return grpc.insecure_channel(self.address)
        return grpc.secure_channel(
            self.address, grpc.ssl_channel_credentials(Path(cert).read_bytes())
        )

    def wait_serving(self) -> None:
        with self.channel() as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                        return
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.05)

    def client(self, token: str | None) -> Client:
        return Client(self.address, token)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as an orchestrator stops it; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.terminate()


def projector_pid(server: ServerProcess) -> int:
    """The pid of the server's projector process: the last one its log says it started."""
    pids = re.findall(r"started the projector process \(pid (\d+)\)", "".join(server.output))
    assert pids, "the server started no projector process"
    return int(pids[-1])


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def running(pid: int) -> bool:
    """Whether process `pid` runs; a zombie (exited, not yet reaped by its new parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def rich_status(error: grpc.RpcError) -> dict[str, Any]:
    """The error's google.rpc.Status details by type name: {"ErrorInfo": msg, ...}."""
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    decoded: dict[str, Any] = {}
    if status is None:
        return decoded
    for detail in status.details:
        for name in ("ErrorInfo", "BadRequest", "ResourceInfo"):
            message = getattr(error_details_pb2, name)()
            if detail.Is(message.DESCRIPTOR):
                detail.Unpack(message)
                decoded[name] = message
    return decoded


@contextlib.contextmanager
def web_server(status: int = 404, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """A loopback HTTP server that answers `status` to every GET (a reachable connector URL);
    over TLS with `tls` (certificate and key files, e.g. self_signed_certificate's)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 that is its own CA, and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


T = TypeVar("T")


def wait_for(read: Callable[[], T], until: Callable[[T], bool], timeout: float = 30) -> T:
    """Reads until the value satisfies `until`; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value):
            return value
        assert time.monotonic() < deadline, f"still {value!r} after {timeout} s"
        time.sleep(0.02)


# -- end to end against a connector's emulator --------------------------------------------------


def new_import(
    admin: Client,
    service: str,
    external_account: str,
    credentials: imports_pb2.Credentials,
    *,
    contact_limit: int = 100_000,
) -> imports_pb2.AutoImport:
    """An import of `service` in a fresh account of its own."""
    auto_import = imports_pb2.AutoImport(
        service=service, external_account=external_account, credentials=credentials
    )
    return create_in_new_account(admin, auto_import, contact_limit)


def create_in_new_account(
    admin: Client, auto_import: imports_pb2.AutoImport, contact_limit: int = 100_000
) -> imports_pb2.AutoImport:
    """Creates `auto_import` in a fresh account of its own."""
    created: imports_pb2.AutoImport = admin.imports.CreateImport(
        imports_pb2.CreateImportRequest(
            account_id=new_account(admin, contact_limit), auto_import=auto_import
        )
    )
    return created


def new_account(admin: Client, contact_limit: int = 100_000) -> str:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    admin.accounts.UpsertAccount(
        accounts_pb2.UpsertAccountRequest(
            account=accounts_pb2.Account(
                account_id=account_id, plan="p", contact_limit=contact_limit
            )
        )
    )
    return account_id


def account_of(import_name: str) -> str:
    return import_name.split("/")[1]


def all_contacts(client: Client, account_id: str) -> list[contacts_pb2.Contact]:
    """Every contact of the account, read page by page."""
    stub = contacts_pb2_grpc.ContactServiceStub(client.channel)
    found: list[contacts_pb2.Contact] = []
    token = ""
    while True:
        page = stub.ListContacts(
            contacts_pb2.ListContactsRequest(
                account_id=account_id, page_size=1000, page_token=token
            )
        )
        found += page.contacts
        token = page.next_page_token
        if not token:
            return found


def wait_for_next_window(interval: float) -> None:
    """Sleeps into the next sync window (AUTOIMPORT_SYNC_INTERVAL = `interval`), so that the
    next sync has a fresh 500-contact budget."""
    time.sleep(interval - time.time() % interval + 0.1)


# What a pass over a source must count exactly once per record, whatever the caps between.
PASS_COUNTS = ("fetched", "skipped_missing_email", "skipped_invalid_email", "deleted_at_source")


def pass_counts(reports: list[imports_pb2.SyncReport]) -> dict[str, int]:
    """PASS_COUNTS summed over the reports of the syncs of one pass over a source."""
    return {name: sum(getattr(report, name) for report in reports) for name in PASS_COUNTS}

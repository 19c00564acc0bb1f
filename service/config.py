"""Configuration from AUTOIMPORT_* environment variables (design.md section 7), in one place."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import unquote, urlsplit

from eventsourcing.cryptography import AESCipher

from connectors import SOURCES, ConnectorSettings

PREFIX = "AUTOIMPORT_"
LEASE_TIMEOUT = 10.0  # seconds: see service/leases.py
SYNC_INTERVAL = 1800.0  # seconds: design.md section 7
# Syncs a server runs at once: TriggerSync past it answers RESOURCE_EXHAUSTED, so that syncs
# never hold the threads that other calls need (service/server.py).
MAX_SYNCS = 8
METRICS_LISTEN = ("127.0.0.1", 9464)  # design.md section 7
# The largest gRPC message (grpcio's default, stated): ImportCsv streams its file in chunks.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ConfigError(Exception):
    """A setting that cannot work; the message names the variable and what it should be."""


class RunProjections(StrEnum):
    """AUTOIMPORT_RUN_PROJECTIONS: where a server runs the read-model projector (server.py)."""

    PROCESS = "process"  # a child process: projecting gets a core of its own (the default)
    THREAD = "thread"  # a thread of the server, sharing its GIL
    NO = "no"  # not at all: `autoimport projector` runs it, or another replica does


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    database_schema: str
    listen: str
    admin_token: str
    cipher_key: str
    tls_cert: str
    tls_key: str
    tls_client_ca: str
    sync_interval: float
    run_projections: RunProjections
    connectors: ConnectorSettings = field(default_factory=ConnectorSettings)
    # How long a PostgreSQL lease outlives its holder's last heartbeat (service/leases.py).
    lease_timeout: float = LEASE_TIMEOUT
    max_syncs: int = MAX_SYNCS
    # Where the cipher key was read from (generated into) when AUTOIMPORT_CIPHER_KEY is unset.
    cipher_key_file: Path | None = None
    # The largest message the server receives or sends (AUTOIMPORT_MAX_MESSAGE_BYTES).
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # Where /metrics is served (host, port; port 0: any free one), None when off.
    metrics_listen: tuple[str, int] | None = METRICS_LISTEN
    # AUTOIMPORT_ADMIN_TOKEN_PREVIOUS: tokens still accepted as the admin's while clients move
    # to the current one (a rotation without downtime).
    previous_admin_tokens: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Reads the settings; generates the admin token and cipher key into the data directory
        the first time when they are not given, so that a fresh install works with no set-up."""
        env = dict(os.environ if environ is None else environ)

        def get(name: str, default: str = "") -> str:
            return env.get(PREFIX + name, default).strip()

        data_dir = Path(get("DATA_DIR", "./data")).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        interval = sync_interval(env)
        database_url = get("DATABASE_URL")
        if database_url:
            postgres_env(database_url)  # fail at start-up, not at the first request
        database_schema = get("DATABASE_SCHEMA", "public")
        if not re.match(r"^[a-z_][a-z0-9_]{0,40}$", database_schema):
            raise ConfigError(
                f"{PREFIX}DATABASE_SCHEMA must be a lower-case SQL name (letters, digits, _)"
            )
        cipher_key = get("CIPHER_KEY")
        cipher_key_file = None
        if not cipher_key:
            cipher_key_file = data_dir / "cipher.key"
            cipher_key = _read_or_create_secret(
                cipher_key_file, lambda: AESCipher.create_key(num_bytes=32)
            )
        admin_token = get("ADMIN_TOKEN") or _read_or_create_secret(
            data_dir / "admin.token", lambda: "adm_" + secrets.token_urlsafe(32)
        )
        tls_cert, tls_key = get("TLS_CERT"), get("TLS_KEY")
        if bool(tls_cert) != bool(tls_key):
            raise ConfigError(f"set both {PREFIX}TLS_CERT and {PREFIX}TLS_KEY, or neither")
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            database_schema=database_schema,
            listen=get("LISTEN", "127.0.0.1:50051"),
            admin_token=admin_token,
            cipher_key=cipher_key,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=get("TLS_CLIENT_CA"),
            sync_interval=interval,
            run_projections=run_projections(get("RUN_PROJECTIONS")),
            connectors=_connector_settings(get),
            lease_timeout=lease_timeout(env),
            max_syncs=max_syncs(env),
            metrics_listen=metrics_listen(env),
            cipher_key_file=cipher_key_file,
            max_message_bytes=max_message_bytes(env),
            previous_admin_tokens=previous_admin_tokens(get("ADMIN_TOKEN_PREVIOUS")),
        )

    @property
    def cipher_key_beside_the_data(self) -> str:
        """Why the cipher key's place is a risk, or "": on PostgreSQL, a key generated into the
        data directory travels with the server's disk and its backups, apart from the store's
        access control; a secret store should hold it."""
        if self.uses_postgres and self.cipher_key_file is not None:
            return (
                f"the cipher key is in {self.cipher_key_file}, on the server's disk: keep it in a "
                f"secret store and give it as {PREFIX}CIPHER_KEY (README: Configuration)"
            )
        return ""

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database_url)

    def projector_env(self) -> dict[str, str]:
        """The variables from which `autoimport projector` reads the store, the keys and the
        lease of these settings: a server gives its child projector exactly these, whatever its
        own environment says (tests and benchmarks build a server's settings from a dict)."""
        return {
            PREFIX + "DATA_DIR": str(self.data_dir),
            PREFIX + "DATABASE_URL": self.database_url,
            PREFIX + "DATABASE_SCHEMA": self.database_schema,
            PREFIX + "CIPHER_KEY": self.cipher_key,
            PREFIX + "ADMIN_TOKEN": self.admin_token,  # else it would generate a token file
            PREFIX + "LEASE_TIMEOUT": repr(self.lease_timeout),
        }

    def store_env(self, store: str, *, create_tables: bool = False) -> dict[str, str]:
        """The eventsourcing environment of one store: the application's events, or a read model.

        On SQLite each store is a file of its own (eventsourcing's SQLite tables have fixed names);
        on PostgreSQL they share the database and eventsourcing prefixes their tables. There, only
        stores.prepare_store (under a lock) creates tables, unless `create_tables`: eventsourcing's
        CREATE OR REPLACE FUNCTION is not idempotent under concurrency ("tuple concurrently
        updated" when replicas and projectors start together).
        """
        env = {
            "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
            "CIPHER_KEY": self.cipher_key,
            "COMPRESSOR_TOPIC": "service.compression:EventCompressor",
        }
        if self.uses_postgres:
            env.update(postgres_env(self.database_url))
            env["POSTGRES_SCHEMA"] = self.database_schema
            env["CREATE_TABLE"] = "yes" if create_tables else "no"
        else:
            env["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
            env["SQLITE_LOCK_TIMEOUT"] = "30"
            env["SQLITE_DBNAME"] = str(self.data_dir / f"{store}.sqlite")
        return env


def run_projections(text: str) -> RunProjections:
    """`process` (or `yes`, what it meant before `thread` existed: this server runs them),
    `thread` or `no`."""
    value = text.strip().lower()
    if value in ("", "process", "yes", "true", "1"):
        return RunProjections.PROCESS
    if value in ("no", "false", "0", "off"):
        return RunProjections.NO
    if value == RunProjections.THREAD:
        return RunProjections.THREAD
    raise ConfigError(
        f"{PREFIX}RUN_PROJECTIONS must be process (the default; yes means the same), thread or "
        f"no, not {text!r}"
    )


def lease_timeout(environ: dict[str, str] | None = None) -> float:
    """AUTOIMPORT_LEASE_TIMEOUT: seconds after which a lease whose holder stopped sending
    heartbeats (stopped, frozen, cut off) is free for another process."""
    env = os.environ if environ is None else environ
    text = env.get(PREFIX + "LEASE_TIMEOUT", "").strip() or str(LEASE_TIMEOUT)
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"{PREFIX}LEASE_TIMEOUT must be a number of seconds, not {text!r}"
        ) from None
    if value < 0.5:  # heartbeats every third of it: shorter would lose leases to hiccups
        raise ConfigError(f"{PREFIX}LEASE_TIMEOUT must be at least 0.5 seconds")
    return value


def metrics_listen(environ: dict[str, str] | None = None) -> tuple[str, int] | None:
    """AUTOIMPORT_METRICS_LISTEN: host:port of the Prometheus endpoint (`[::1]:9464` for IPv6,
    port 0 for any free one), or `off`; 127.0.0.1:9464 when unset. For the server and the
    scheduler alike (each process on one host needs a port of its own)."""
    env = os.environ if environ is None else environ
    text = env.get(PREFIX + "METRICS_LISTEN", "").strip()
    if not text:
        return METRICS_LISTEN
    if text.lower() in ("off", "no", "0", "false"):
        return None
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(
            f"{PREFIX}METRICS_LISTEN must be host:port (port 0 picks a free one) or off, "
            f"not {text!r}"
        )
    return host, int(port_text)


def max_message_bytes(environ: dict[str, str]) -> int:
    """AUTOIMPORT_MAX_MESSAGE_BYTES: the largest gRPC message received or sent."""
    text = environ.get(PREFIX + "MAX_MESSAGE_BYTES", "").strip() or str(MAX_MESSAGE_BYTES)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1024 <= value <= 64 * 1024 * 1024:
        raise ConfigError(
            f"{PREFIX}MAX_MESSAGE_BYTES must be a whole number of bytes from 1024 to 67108864, "
            f"not {text!r}"
        )
    return value


def sync_interval(environ: dict[str, str] | None = None) -> float:
    """AUTOIMPORT_SYNC_INTERVAL: seconds between an import's syncs (fractions allowed), also the
    length of the 500-contact window. The server and the scheduler read the same."""
    env = os.environ if environ is None else environ
    text = env.get(PREFIX + "SYNC_INTERVAL", "").strip() or str(SYNC_INTERVAL)
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"{PREFIX}SYNC_INTERVAL must be a number of seconds, not {text!r}"
        ) from None
    if value <= 0:
        raise ConfigError(f"{PREFIX}SYNC_INTERVAL must be greater than 0")
    return value


def max_syncs(environ: dict[str, str] | None = None) -> int:
    """AUTOIMPORT_MAX_SYNCS: syncs a server runs at once (the scheduler's and people's)."""
    env = os.environ if environ is None else environ
    text = env.get(PREFIX + "MAX_SYNCS", "").strip() or str(MAX_SYNCS)
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise ConfigError(f"{PREFIX}MAX_SYNCS must be a whole number from 1 to 1000, not {text!r}")
    return int(text)


def _connector_settings(get: Callable[..., str]) -> ConnectorSettings:
    """Every source's settings from their AUTOIMPORT_* variables, checked."""
    values: dict[str, dict[str, str]] = {}
    for source in SOURCES.values():
        given = {}
        for setting in source.settings:
            value = get(setting.env.removeprefix(PREFIX), setting.default).strip()
            if setting.url:
                value = value.rstrip("/")
                if value and urlsplit(value).scheme not in ("http", "https"):
                    raise ConfigError(f"{setting.env} must be an http:// or https:// URL")
            given[setting.name] = value
        try:
            source.check_settings(given)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        values[source.id] = given
    return ConnectorSettings(values)


def postgres_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ConfigError(
            f"{PREFIX}DATABASE_URL must look like postgresql://user[:password]@host[:port]/database"
        )
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(parts.path.strip("/")),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
    }


def previous_admin_tokens(value: str) -> tuple[str, ...]:
    """AUTOIMPORT_ADMIN_TOKEN_PREVIOUS: comma-separated; spaces around each and empty ones go."""
    return tuple(token for token in (t.strip() for t in value.split(",")) if token)


def _read_or_create_secret(path: Path, create) -> str:  # type: ignore[no-untyped-def]
    """Reads a secret file, or creates it readable by this user only (0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):  # another process may have created it a moment ago
            if value := path.read_text().strip():
                return value
            time.sleep(0.02)
        raise ConfigError(f"{path} is empty: delete it to generate a new secret") from None
    with os.fdopen(fd, "w") as f:
        value = create()
        f.write(value + "\n")
    return str(value)

"""Operating the service: Prometheus metrics scraped from real servers, JSON log lines without
secrets, and `autoimport doctor` on healthy and broken deployments (issue 9, part 3)."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from eventsourcing.cryptography import AESCipher
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from autoimport.v1 import accounts_pb2 as apb
from autoimport.v1 import imports_pb2 as pb
from connectors import SOURCES, http
from connectors.base import PermanentError
from emulators.hubspot import HubSpotEmulator
from service import doctor, logs, metrics
from service.config import ConfigError, metrics_listen
from tests.conftest import STORES
from tests.scripted import T0
from tests.scripted_server import write_source
from tests.support import ROOT, Client, ServerProcess, store_env, wait_for, web_server
from tests.test_api_sync import SCRIPTED

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
IMPORTS = "autoimport.v1.AutoImportService"


def metrics_url(server: ServerProcess) -> str:
    """The metrics address the server printed at start (it listens on a free port)."""
    found = wait_for(
        lambda: re.search(r"autoimport metrics at (http://\S+)", "".join(server.output)),
        lambda match: match is not None,
    )
    assert found is not None
    return found.group(1)


def scrape(url: str) -> Samples:
    """Every sample of the endpoint, by name and labels."""
    text = httpx.get(url, timeout=10).raise_for_status().text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connector_urls(url: str) -> dict[str, str]:
    """Every base URL setting of every source, at `url` (the tests reach no real service)."""
    return {
        setting.env: url
        for source in SOURCES.values()
        for setting in source.settings
        if setting.url
    }


def new_account(admin: Client, limit: int) -> str:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    admin.accounts.UpsertAccount(
        apb.UpsertAccountRequest(
            account=apb.Account(account_id=account_id, plan="p", contact_limit=limit)
        )
    )
    return account_id


# -- a scripted server per store: metrics, and doctor on a healthy deployment -----------------


class Deployment:
    def __init__(self, server: ServerProcess, sources: Path):
        self.server = server
        self.sources = sources
        self.metrics = metrics_url(server)


@pytest.fixture(scope="module", params=STORES)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp(f"ops-{request.param}")
    sources = folder / "sources"
    sources.mkdir()
    with (
        web_server() as url,
        store_env(request.param, folder) as env,
        ServerProcess(
            {**env, **connector_urls(url), "AUTOIMPORT_TEST_SOURCES": str(sources)}, SCRIPTED
        ) as server,
    ):
        yield Deployment(server, sources)


def test_metrics_count_syncs_contacts_and_calls(deployment: Deployment):
    with deployment.server.client(deployment.server.admin_token) as admin:
        account_id = new_account(admin, limit=3)
        store = f"store-{uuid.uuid4().hex[:8]}"
        contacts = [
            {
                "external_id": f"c{n}",
                "email": f"c{n}@example.com",
                "updated_at": (T0 + timedelta(seconds=n)).isoformat(),
            }
            for n in range(5)
        ]
        contacts += [
            {"external_id": "m", "email": "", "updated_at": T0.isoformat()},
            {"external_id": "i", "email": "not-an-email", "updated_at": T0.isoformat()},
        ]
        write_source(deployment.sources, store, contacts)
        created = admin.imports.CreateImport(
            pb.CreateImportRequest(
                account_id=account_id,
                auto_import=pb.AutoImport(
                    service="shopify",
                    external_account=store,
                    credentials=pb.Credentials(access_token="t"),
                ),
            )
        )
        before = scrape(deployment.metrics)
        first = admin.imports.TriggerSync(pb.TriggerSyncRequest(name=created.name), timeout=60)
        contacts[0].update(first_name="Renamed", updated_at=(T0 + timedelta(days=1)).isoformat())
        write_source(deployment.sources, store, contacts)
        second = admin.imports.TriggerSync(pb.TriggerSyncRequest(name=created.name), timeout=60)
        with pytest.raises(grpc.RpcError):
            admin.imports.GetImport(
                pb.GetImportRequest(name=f"accounts/{account_id}/imports/{uuid.uuid4()}")
            )
        after = scrape(deployment.metrics)

    assert (first.outcome, first.added, first.blocked_by_limit) == (
        pb.SyncReport.LIMIT_REACHED,
        3,
        2,
    ), first
    assert (second.outcome, second.updated) == (pb.SyncReport.COMPLETED, 1), second

    def syncs(outcome: str) -> float:
        return moved(before, after, "autoimport_syncs_total", service="shopify", outcome=outcome)

    assert (syncs("LIMIT_REACHED"), syncs("COMPLETED"), syncs("FAILED")) == (1, 1, 0)
    results = {
        result: moved(before, after, "autoimport_contacts_total", service="shopify", result=result)
        for result in metrics.CONTACT_RESULTS
    }
    assert results == {
        "added": 3,
        "updated": 1,
        "skipped_missing_email": 1,
        "skipped_invalid_email": 1,
        "skipped_at_source": 0,
        "deferred": 0,
        "blocked": 2,
    }
    assert moved(before, after, "autoimport_sync_duration_seconds_count", service="shopify") == 2
    trigger = {"grpc_type": "unary", "grpc_service": IMPORTS, "grpc_method": "TriggerSync"}
    assert moved(before, after, "grpc_server_handled_total", **trigger, grpc_code="OK") == 2
    assert moved(before, after, "grpc_server_started_total", **trigger) == 2
    assert moved(before, after, "grpc_server_handling_seconds_count", **trigger) == 2
    get = {"grpc_type": "unary", "grpc_service": IMPORTS, "grpc_method": "GetImport"}
    assert moved(before, after, "grpc_server_handled_total", **get, grpc_code="NOT_FOUND") == 1
    # Scraped after the writes: once the read model applied them, no lag.
    lag = wait_for(
        lambda: value(
            scrape(deployment.metrics),
            "autoimport_projection_lag_events",
            projection=_projection_name(),
        ),
        lambda lag: lag == 0,
    )
    assert lag == 0
    # The scheduler's metrics are defined (the scheduler process sets them).
    assert ("autoimport_scheduler_due_imports", frozenset()) in after


def _projection_name() -> str:
    from service.read_models.views import AccountViewsProjection

    return AccountViewsProjection.name


def test_doctor_passes_on_a_healthy_deployment(deployment: Deployment):
    with deployment.server.client(deployment.server.admin_token) as admin:
        account_id = new_account(admin, limit=100)
        store = f"store-{uuid.uuid4().hex[:8]}"
        write_source(deployment.sources, store, [])
        created = admin.imports.CreateImport(
            pb.CreateImportRequest(
                account_id=account_id,
                auto_import=pb.AutoImport(
                    service="shopify",
                    external_account=store,
                    credentials=pb.Credentials(access_token="t"),
                ),
            )
        )
        admin.imports.TriggerSync(pb.TriggerSyncRequest(name=created.name), timeout=60)
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "doctor"],
        cwd=ROOT,
        env=deployment.server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    checks = [line.split(":")[0].split(maxsplit=1) for line in lines if ":" in line]
    assert [status for status, _ in checks] == ["ok"] * len(checks), done.stdout
    assert [name for _, name in checks] == [
        "configuration",
        "store",
        "read model",
        "scheduler",
        # one check per base URL setting of every source, in the registry's order
        *(
            f"connector {source.id}" + ("" if setting.name == "url" else f" {setting.name}")
            for source in SOURCES.values()
            for setting in source.settings
            if setting.url
        ),
    ], done.stdout
    assert "connector google_contacts oauth_url" in done.stdout
    assert lines[-1] == "everything looks right"
    assert "none overdue" in done.stdout
    assert deployment.server.admin_token not in done.stdout + done.stderr


def run_doctor(environ: dict[str, str], **options: Any) -> tuple[int, dict[str, str]]:
    """Doctor in this process: its exit code and each check's line (status and detail)."""
    out = io.StringIO()
    code = doctor.run(out, environ, **options)
    found = {}
    for line in out.getvalue().splitlines():
        if match := re.match(r"(ok|FAIL)\s+([^:]+): (.*)", line):
            found[match.group(2)] = f"{match.group(1)} {match.group(3)}"
    return code, found


def test_doctor_names_a_wrong_cipher_key(deployment: Deployment):
    wrong = {**deployment.server.env, "AUTOIMPORT_CIPHER_KEY": AESCipher.create_key(32)}
    code, found = run_doctor(wrong)
    assert code == 1
    assert found["store"].startswith("FAIL the event store was written with another cipher key")
    assert found["read model"] == "FAIL not checked: the store cannot be read"


def test_doctor_names_an_unreachable_connector_url(deployment: Deployment):
    port = closed_port()
    broken = {**deployment.server.env, "AUTOIMPORT_HUBSPOT_URL": f"http://127.0.0.1:{port}"}
    code, found = run_doctor(broken)
    assert code == 1
    assert found["connector hubspot"].startswith(f"FAIL cannot reach http://127.0.0.1:{port} ")
    assert "AUTOIMPORT_HUBSPOT_URL" in found["connector hubspot"]
    assert found["store"].startswith("ok") and found["connector shopify"].startswith("ok")


def test_doctor_names_imports_that_nobody_scheduled(deployment: Deployment):
    with deployment.server.client(deployment.server.admin_token) as admin:
        admin.imports.CreateImport(
            pb.CreateImportRequest(
                account_id=new_account(admin, limit=100),
                auto_import=pb.AutoImport(
                    service="shopify",
                    external_account=f"store-{uuid.uuid4().hex[:8]}",
                    credentials=pb.Credentials(access_token="t"),
                ),
            )
        )
    later = datetime.now(UTC) + timedelta(hours=2)  # the interval is 30 minutes
    code, found = run_doctor(deployment.server.env, now=lambda: later)
    assert code == 1
    assert re.match(
        r"FAIL \d+ of \d+ active imports are more than one interval \(30 min\) past due",
        found["scheduler"],
    ), found
    assert "autoimport scheduler" in found["scheduler"]


def test_doctor_names_an_unreachable_database(tmp_path: Path):
    port = closed_port()
    code, found = run_doctor(
        {
            "AUTOIMPORT_DATA_DIR": str(tmp_path),
            "AUTOIMPORT_DATABASE_URL": f"postgresql://autoimport:pw-secret@127.0.0.1:{port}/db",
            **connector_urls(f"http://127.0.0.1:{closed_port()}"),
        }
    )
    assert code == 1
    assert found["store"].startswith(
        f"FAIL cannot reach PostgreSQL at autoimport@127.0.0.1:{port}/db ("
    ), found
    assert "pw-secret" not in json.dumps(found)


def test_doctor_names_a_missing_sqlite_store_and_a_bad_setting(tmp_path: Path):
    code, found = run_doctor({"AUTOIMPORT_DATA_DIR": str(tmp_path / "typo")})
    assert code == 1
    assert found["store"].startswith(f"FAIL no store in {tmp_path / 'typo'}")
    code, found = run_doctor(
        {"AUTOIMPORT_DATA_DIR": str(tmp_path), "AUTOIMPORT_METRICS_LISTEN": "everywhere"}
    )
    assert code == 1
    assert found["configuration"].startswith("FAIL AUTOIMPORT_METRICS_LISTEN must be host:port")


# -- a real server reading the HubSpot emulator: JSON logs without secrets ----------------------

GOOGLE_SECRET = "gcs-TOPSECRET-0f9e8d7c6b5a"


@pytest.mark.parametrize("store", STORES)
def test_logs_are_json_lines_with_one_line_per_sync_and_no_secret(store: str, tmp_path: Path):
    with (
        HubSpotEmulator() as emulator,
        store_env(store, tmp_path) as env,
        ServerProcess(
            {
                **env,
                "AUTOIMPORT_HUBSPOT_URL": emulator.url,
                "AUTOIMPORT_GOOGLE_CLIENT_ID": "client-id",
                "AUTOIMPORT_GOOGLE_CLIENT_SECRET": GOOGLE_SECRET,
            }
        ) as server,
        server.client(server.admin_token) as admin,
    ):
        emulator.add_contacts(30)
        # One 503 first: retried at once (Retry-After: 0), counted as a connector HTTP error.
        emulator.faults.append((503, {"Retry-After": "0"}, {"message": "try again"}))
        account_id = new_account(admin, limit=1000)
        key = admin.accounts.CreateApiKey(apb.CreateApiKeyRequest(account_id=account_id)).key
        before = scrape(metrics_url(server))
        with server.client(key) as client:
            created = client.imports.CreateImport(
                pb.CreateImportRequest(
                    account_id=account_id,
                    auto_import=pb.AutoImport(
                        service="hubspot",
                        external_account=emulator.portal_id,
                        credentials=pb.Credentials(access_token=emulator.access_token),
                    ),
                )
            )
            report = client.imports.TriggerSync(
                pb.TriggerSyncRequest(name=created.name), timeout=60
            )
        with server.client("aik_not_a_key_TOPSECRET") as stranger, pytest.raises(grpc.RpcError):
            stranger.imports.GetImport(pb.GetImportRequest(name=created.name))
        after = scrape(metrics_url(server))
        cipher_key = (
            server.env.get("AUTOIMPORT_CIPHER_KEY")
            or (Path(env["AUTOIMPORT_DATA_DIR"]) / "cipher.key").read_text().strip()
        )
        assert server.terminate() == 0
    assert report.outcome == pb.SyncReport.COMPLETED and report.fetched == 30, report
    errors = {"service": "hubspot", "status": "503"}
    assert moved(before, after, "autoimport_connector_http_errors_total", **errors) == 1
    assert moved(before, after, "autoimport_syncs_total", service="hubspot", outcome="COMPLETED")

    printed = ("autoimport listening on ", "autoimport metrics at ", "admin token: ")
    records = []
    for line in server.output:
        if line.startswith(printed):  # the start-up lines on stdout; the rest is stderr's
            continue
        records.append(json.loads(line))  # every log line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(records[0])
    synced = [r for r in records if r.get("event") == "sync_finished"]
    assert len(synced) == 1, records
    line = synced[0]
    assert (line["import"], line["service"], line["outcome"]) == (
        created.name,
        "hubspot",
        "COMPLETED",
    )
    assert line["level"] == "INFO" and line["logger"] == "service.sync"
    assert line["sync_id"] == report.sync_id
    assert line["counts"]["fetched"] == 30 and line["counts"]["added"] == report.added
    assert line["counts"]["skipped_invalid_email"] == report.skipped_invalid_email
    assert isinstance(line["duration_seconds"], float) and line["duration_seconds"] >= 0
    assert created.name in line["message"] and "COMPLETED" in line["message"]

    everything = "".join(server.output)
    for secret in (
        emulator.access_token,
        key,
        server.admin_token,
        cipher_key,
        GOOGLE_SECRET,
        "TOPSECRET",
    ):
        assert secret not in everything
    # Nothing even tried to log one: the scrubber had nothing to hide.
    assert logs.REDACTED not in everything


# -- units ------------------------------------------------------------------------------------


def test_the_metrics_address_setting():
    assert metrics_listen({}) == ("127.0.0.1", 9464)
    assert metrics_listen({"AUTOIMPORT_METRICS_LISTEN": "off"}) is None
    assert metrics_listen({"AUTOIMPORT_METRICS_LISTEN": "0.0.0.0:0"}) == ("0.0.0.0", 0)
    assert metrics_listen({"AUTOIMPORT_METRICS_LISTEN": "[::1]:9100"}) == ("::1", 9100)
    for wrong in ("9464", "host:", "host:port", "h:70000"):
        with pytest.raises(ConfigError, match="AUTOIMPORT_METRICS_LISTEN"):
            metrics_listen({"AUTOIMPORT_METRICS_LISTEN": wrong})


def test_a_taken_metrics_port_is_a_configuration_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            metrics.start_http_server(("127.0.0.1", port))


def test_connector_http_errors_are_counted_on_every_try(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(http, "BASE_DELAY", 0.0)
    answers = iter([httpx.ConnectError("refused"), 503, 404])

    def answer(request: httpx.Request) -> httpx.Response:
        given = next(answers)
        if isinstance(given, Exception):
            raise given
        return httpx.Response(given, json={"message": "no"})

    http.on_error(metrics.count_connector_http_error)
    http.on_error(metrics.count_connector_http_error)  # once is enough: not counted twice

    def count(status: str) -> float:
        labels = {"service": "shopify", "status": status}
        return REGISTRY.get_sample_value("autoimport_connector_http_errors_total", labels) or 0

    before = {status: count(status) for status in ("ConnectError", "503", "404")}
    transport = httpx.MockTransport(answer)
    with (
        httpx.Client(transport=transport, base_url="http://shop") as client,
        pytest.raises(PermanentError),
    ):
        http.send(client, "GET", "/customers.json", service="Shopify")
    assert {s: count(s) - before[s] for s in before} == {"ConnectError": 1, "503": 1, "404": 1}


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Puts the root logger's handlers and level back after a test that configures logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_extras_and_never_a_secret(root_logging: None):
    stream = io.StringIO()
    logs.configure(stream)
    logs.hide("configured-secret-value")
    log = logging.getLogger("tests.ops")
    log.info("plain %s", "words", extra={"import": "accounts/a/imports/b", "counts": {"n": 1}})
    log.warning("leaked configured-secret-value and Bearer abc.def and pat-na1-xyz")
    try:
        raise RuntimeError("postgresql://u:hunter2@db:5432/x failed")
    except RuntimeError:
        log.exception("boom")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "plain words" and lines[0]["counts"] == {"n": 1}
    assert lines[0]["import"] == "accounts/a/imports/b" and lines[0]["level"] == "INFO"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", lines[0]["time"])
    assert lines[1]["message"] == "leaked [REDACTED] and [REDACTED] and [REDACTED]"
    assert "hunter2" not in lines[2]["exception"] and "u:[REDACTED]@db" in lines[2]["exception"]


def test_a_terminal_gets_readable_lines(root_logging: None):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    logs.configure(stream)
    logging.getLogger("tests.ops").info("hello %d", 1)
    assert re.match(r"\S+Z INFO    tests\.ops: hello 1\n$", stream.getvalue())

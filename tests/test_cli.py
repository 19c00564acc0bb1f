"""The `autoimport accounts|imports` client, run in-process against real servers."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import tracemalloc
import types
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2
from tqdm import tqdm

from autoimport.v1 import (
    accounts_pb2,
    contacts_pb2,
    contacts_pb2_grpc,
    fields_pb2,
    fields_pb2_grpc,
    imports_pb2,
    imports_pb2_grpc,
)
from connectors import SOURCES
from service import cli, client_cli
from tests.conftest import STORES
from tests.scripted_server import write_source
from tests.support import ServerProcess, self_signed_certificate

CLIENT_VARIABLES = (
    "AUTOIMPORT_ADDRESS",
    "AUTOIMPORT_TOKEN",
    "AUTOIMPORT_ADMIN_TOKEN",
    "AUTOIMPORT_CA_CERT",
    "AUTOIMPORT_ACCESS_TOKEN",
    "AUTOIMPORT_REFRESH_TOKEN",
)
ADMIN = object()  # run() default: the server's admin token
T = TypeVar("T")


class Target(Protocol):
    """A server the client calls: a real one (ServerProcess) or a fake one in this process."""

    address: str
    admin_token: str


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def fields(self) -> dict[str, str]:
        """The `field: value` lines of a record."""
        return dict(re.findall(r"^(\S+):[ ]+(.*)$", self.out, re.MULTILINE))

    def table(self) -> list[list[str]]:
        """The rows (without the header) of the first table, cells split on 2+ spaces."""
        lines = self.out.split("\n\n")[0].splitlines()
        return [re.split(r"  +", line.strip()) for line in lines[1:]]


class Cli:
    def __init__(self, server: Target, capsys: pytest.CaptureFixture[str]):
        self.server = server
        self.capsys = capsys

    def run(self, *argv: str, token: Any = ADMIN) -> Result:
        options = ["--address", self.server.address]
        if token is not None:
            options += ["--token", self.server.admin_token if token is ADMIN else token]
        self.capsys.readouterr()
        code = cli.main([*options, *argv])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *argv: str, token: Any = ADMIN) -> Result:
        result = self.run(*argv, token=token)
        assert result.code == 0, result.err
        return result

    def json(self, *argv: str, token: Any = ADMIN) -> Any:
        return json.loads(self.ok("--json", *argv, token=token).out)

    def create_shopify(self, account: str, *options: str) -> dict[str, Any]:
        return self.json(
            "imports",
            "create",
            "--account",
            account,
            "--service",
            "shopify",
            "--external-account",
            "my-store",
            "--access-token",
            "shpat_1",
            *options,
        )


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No client variable set, and a data directory without admin.token; returns that directory."""
    for name in CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOIMPORT_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def run(server: ServerProcess, capsys: pytest.CaptureFixture[str], client_env: Path) -> Cli:
    return Cli(server, capsys)


def test_accounts_upsert_get_and_create_key(run: Cli) -> None:
    created = run.ok("accounts", "upsert", "acme-cli", "--plan", "lite", "--contact-limit", "1000")
    assert created.fields() == {
        "account_id": "acme-cli",
        "plan": "lite",
        "contact_limit": "1000",
        "contact_count": "0",
    }
    run.ok("accounts", "upsert", "acme-cli", "--plan", "plus", "--contact-limit", "5000")
    assert run.ok("accounts", "get", "acme-cli").fields()["plan"] == "plus"

    created_key = run.ok("accounts", "create-key", "acme-cli")
    key, key_id = created_key.fields()["key"], created_key.fields()["key_id"]
    assert "shown only this once" in created_key.err
    assert run.ok("accounts", "get", "acme-cli", token=key).fields()["contact_limit"] == "5000"
    # The key acts for its account, and history names it by its key id.
    name = run.create_shopify("acme-cli")["name"]
    run.ok("imports", "pause", name, token=key)
    assert run.json("imports", "history", name, token=key)[-1]["actor"] == f"key:{key_id}"


def test_list_keys_and_revoke_key(run: Cli, account: str) -> None:
    first = run.ok("accounts", "create-key", account).fields()
    second = run.ok("accounts", "create-key", account, "--expires", "30d").fields()

    listed = run.ok("accounts", "list-keys", account, token=first["key"])
    rows = listed.table()
    assert [row[:3] for row in rows] == [
        [first["key_id"], f"aik_{first['key_id']}", "admin"],
        [second["key_id"], f"aik_{second['key_id']}", "admin"],
    ]
    assert rows[0][4:] == ["-", "-"]  # never expires, not revoked
    assert rows[1][4] != "-" and rows[1][5] == "-"
    assert first["key"] not in listed.out and second["key"] not in listed.out

    revoked = run.ok("accounts", "revoke-key", account, second["key_id"], token=first["key"])
    assert revoked.fields()["key_id"] == second["key_id"]
    assert revoked.fields()["revoke_time"] != "-"
    refused = run.run("accounts", "get", account, token=second["key"])
    assert refused.code == 1
    assert refused.err.startswith("error: UNAUTHENTICATED: the API key ")
    assert "revoked" in refused.err
    keys = run.json("accounts", "list-keys", account)["api_keys"]
    assert ["revoke_time" in k for k in keys] == [False, True]
    unknown = run.run("accounts", "revoke-key", account, "0badf00d")
    assert unknown.code == 1 and unknown.err.startswith("error: NOT_FOUND: ")


def test_create_key_expires_at_a_time_or_after_a_duration(run: Cli, account: str) -> None:
    at_time = run.json("accounts", "create-key", account, "--expires", "2099-01-31T00:00:00Z")
    assert at_time["api_key"]["expire_time"] == "2099-01-31T00:00:00Z"

    past = run.run("accounts", "create-key", account, "--expires", "2001-01-01T00:00:00Z")
    zero = run.run("accounts", "create-key", account, "--expires", "0h")

    assert past.code == zero.code == 1
    assert past.err.startswith("error: INVALID_ARGUMENT: expire_time: must be in the future")
    assert zero.err.startswith("error: INVALID_ARGUMENT: ttl: ")


@pytest.mark.parametrize(
    ("expires", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("1d12h", 129600), ("2w", 1209600), ("90m", 5400)],
)
def test_expires_as_a_duration_is_sent_as_a_ttl(expires: str, seconds: int) -> None:
    request = accounts_pb2.CreateApiKeyRequest()

    client_cli._set_expiry(request, expires)

    assert request.WhichOneof("expiration") == "ttl"
    assert (request.ttl.seconds, request.ttl.nanos) == (seconds, 0)


def test_create_each_service_with_criteria_then_list(run: Cli, account: str) -> None:
    common = ("imports", "create", "--account", account)
    google = run.json(
        *common,
        "--service",
        "google_contacts",
        "--external-account",
        "Ann@Example.com",
        "--access-token",
        "ya29",
        "--refresh-token",
        "1//r",
        "--contact-group",
        "contactGroups/friends",
    )
    shopify = run.create_shopify(
        account, "--subscribed-only", "--customer-tag", "vip", "--list-id", "news", "--tag", "shop"
    )
    hubspot = run.ok(
        *common,
        "--service",
        "hubspot",
        "--external-account",
        "12345",
        "--access-token",
        "pat",
        "--lifecycle-stage",
        "lead",
        "--display-name",
        "CRM",
    ).fields()

    assert google["google_contacts"] == {"contact_group": "contactGroups/friends"}
    assert google["external_account"] == "ann@example.com"
    assert shopify["shopify"] == {"subscribed_only": True, "customer_tag": "vip"}
    assert (shopify["list_ids"], shopify["tags"]) == (["news"], ["shop"])
    assert hubspot["hubspot.lifecycle_stage"] == "lead"
    assert hubspot["display_name"] == "CRM"
    assert "credentials" not in json.dumps(google)

    listed = run.ok("imports", "list", "--account", account, "--page-size", "2")
    assert listed.out.splitlines()[0].split("  ")[0] == "NAME"
    assert sorted(row[:4] for row in listed.table()) == sorted(
        [
            [google["name"], "google_contacts", "ann@example.com", "ACTIVE"],
            [shopify["name"], "shopify", "my-store", "ACTIVE"],
            [hubspot["name"], "hubspot", "12345", "ACTIVE"],
        ]
    )
    counts = {**dict.fromkeys(SOURCES, 0), "google_contacts": 1, "hubspot": 1, "shopify": 1}
    assert listed.out.rstrip().endswith(
        "imports per service: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items()))
    )
    only_shopify = run.ok("imports", "list", "--account", account, "--service", "shopify")
    assert [row[0] for row in only_shopify.table()] == [shopify["name"]]


def test_list_follows_every_page(run: Cli, account: str) -> None:
    names = {run.create_shopify(account, "--display-name", f"shop {i}")["name"] for i in range(5)}
    listed = run.json("imports", "list", "--account", account, "--page-size", "2")
    assert {i["name"] for i in listed["auto_imports"]} == names
    assert listed["counts_by_service"] == {**{service: 0 for service in SOURCES}, "shopify": 5}
    assert listed["next_page_token"] == ""


def test_update_changes_only_what_the_options_name(run: Cli, account: str) -> None:
    created = run.create_shopify(
        account,
        "--display-name",
        "Shop",
        "--customer-tag",
        "vip",
        "--list-id",
        "news",
        "--tag",
        "a",
    )
    name = created["name"]

    tagged = run.ok("imports", "update", name, "--tag", "b", "--tag", "c").fields()
    assert tagged["tags"] == "b, c"
    assert (tagged["list_ids"], tagged["display_name"]) == ("news", "Shop")
    assert tagged["shopify.customer_tag"] == "vip"

    cleared = run.json("imports", "update", name, "--clear-tags", "--display-name", "Store")
    assert cleared["tags"] == []
    assert (cleared["list_ids"], cleared["display_name"]) == (["news"], "Store")

    reset = run.json("imports", "update", name, "--all-contacts", "--clear-list-ids")
    assert reset["shopify"] == {"subscribed_only": False, "customer_tag": ""}
    assert reset["list_ids"] == []

    subscribed = run.json("imports", "update", name, "--subscribed-only")
    assert subscribed["shopify"] == {"subscribed_only": True, "customer_tag": ""}

    changes = [e["details"] for e in run.json("imports", "history", name) if e["type"] == "Updated"]
    assert changes == [
        {"changes": {"tags": ["b", "c"]}},
        {"changes": {"display_name": "Store", "tags": []}},
        {"changes": {"criteria": {"subscribed_only": False, "customer_tag": ""}, "list_ids": []}},
        {"changes": {"criteria": {"subscribed_only": True, "customer_tag": ""}}},
    ]


@pytest.mark.parametrize(
    ("options", "paths"),
    [
        (["--tag", "x"], ["tags"]),
        (["--clear-tags"], ["tags"]),
        (["--display-name", "N", "--clear-list-ids"], ["display_name", "list_ids"]),
        (["--access-token", "t"], ["credentials"]),
        (["--credentials-from-env"], ["credentials"]),
        (["--lifecycle-stage", "lead"], ["criteria"]),
        (["--all-contacts"], ["criteria"]),
    ],
)
def test_update_mask_is_built_from_exactly_the_options(
    options: list[str], paths: list[str], client_env: Path
) -> None:
    sent: list[imports_pb2.UpdateImportRequest] = []

    class RecordingApi:
        imports = types.SimpleNamespace(UpdateImport="UpdateImport")

        def call(self, method: str, request: Any) -> imports_pb2.AutoImport:
            sent.append(request)
            return request.auto_import

    args = cli.build_parser().parse_args(["imports", "update", "accounts/a/imports/i", *options])
    args.verb(args, RecordingApi())
    assert list(sent[0].update_mask.paths) == paths


def test_update_credentials_and_stale_etag(
    run: Cli, account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = run.create_shopify(account)
    name = created["name"]
    run.ok("imports", "update", name, "--access-token", "shpat_2", "--etag", created["etag"])
    monkeypatch.setenv("AUTOIMPORT_ACCESS_TOKEN", "shpat_3")
    run.ok("imports", "update", name, "--credentials-from-env")
    types_ = [e["type"] for e in run.json("imports", "history", name)]
    assert types_ == ["Created", "CredentialsRotated", "CredentialsRotated"]

    stale = run.run("imports", "update", name, "--tag", "x", "--etag", created["etag"])
    assert stale.code == 1
    assert stale.err.startswith("error: ABORTED: ")
    assert run.json("imports", "get", name)["tags"] == []


def test_pause_resume_delete_and_history(run: Cli, account: str) -> None:
    name = run.create_shopify(account)["name"]
    run.ok("imports", "update", name, "--tag", "vip")
    assert run.ok("imports", "pause", name).fields()["state"] == "PAUSED"
    assert run.ok("imports", "resume", name).fields()["state"] == "ACTIVE"
    deleted = run.ok("imports", "delete", name)
    assert deleted.out.strip() == f"deleted {name}"

    gone = run.run("imports", "get", name)
    assert gone.code == 1
    assert gone.err.startswith("error: NOT_FOUND: ")
    assert gone.out == ""

    history = run.ok("imports", "history", name)
    assert re.split(r"  +", history.out.splitlines()[0]) == [
        "VERSION",
        "TIME",
        "TYPE",
        "ACTOR",
        "DETAILS",
    ]
    rows = history.table()
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("1", "Created", "admin"),
        ("2", "Updated", "admin"),
        ("3", "Paused", "admin"),
        ("4", "Resumed", "admin"),
        ("5", "Deleted", "admin"),
    ]
    assert json.loads(rows[1][4]) == {"changes": {"tags": ["vip"]}}
    assert json.loads(rows[0][4])["credentials"] == "(hidden)"
    assert "shpat_1" not in history.out


def test_json_output(run: Cli, account: str) -> None:
    name = run.create_shopify(account, "--tag", "t")["name"]
    got = run.json("imports", "get", name)
    assert (got["name"], got["service"], got["state"]) == (name, "shopify", "ACTIVE")
    assert got["tags"] == ["t"]
    assert got["display_name"] == "Shopify (my-store)"
    assert [e["type"] for e in run.json("imports", "history", name)] == ["Created"]
    assert run.json("accounts", "get", account)["account_id"] == account
    assert run.json("imports", "delete", name) == {}


def test_services(run: Cli, account: str) -> None:
    run.create_shopify(account)
    listed = run.json("imports", "services", "--account", account)["services"]
    services = {s["id"]: s for s in listed}
    assert set(services) == set(SOURCES)
    assert services["shopify"]["import_count"] == 1

    shown = run.ok("imports", "services", "--account", account)
    _, fields = shown.out.split("\n\n")
    assert ["shopify", "Shopify", "1"] in [row[:3] for row in shown.table()]
    field_rows = [re.split(r"  +", line) for line in fields.splitlines()]
    assert field_rows[0] == ["SERVICE", "FIELD", "TITLE", "PERSONALIZATION TAG"]
    expected = {
        (s["id"], f["key"], f["title"], f["personalization_tag"])
        for s in services.values()
        for f in s["fields"]
    }
    assert {tuple(row) for row in field_rows[1:]} == expected
    assert all(re.fullmatch(r"%[A-Z_]+%", tag) for *_, tag in expected)


def test_invalid_request_prints_field_violations(run: Cli, account: str) -> None:
    result = run.run(
        "imports",
        "create",
        "--account",
        account,
        "--service",
        "shopfy",
        "--external-account",
        "my-store",
        "--access-token",
        "t",
    )
    assert result.code == 1
    assert result.out == ""
    lines = result.err.splitlines()
    assert lines[0].startswith("error: INVALID_ARGUMENT: ")
    assert re.match(r"^  auto_import\.service: must be one of ", lines[1])


def test_missing_token_is_unauthenticated(run: Cli, account: str) -> None:
    result = run.run("imports", "list", "--account", account, token=None)
    assert result.code == 1
    assert result.err.startswith("error: UNAUTHENTICATED: ")


def test_token_and_address_from_the_environment(
    run: Cli, account: str, client_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = ("--json", "imports", "list", "--account", account)
    (client_env / "admin.token").write_text(run.server.admin_token + "\n")
    assert cli.main(["--address", run.server.address, *listing]) == 0

    (client_env / "admin.token").unlink()
    monkeypatch.setenv("AUTOIMPORT_TOKEN", run.server.admin_token)
    monkeypatch.setenv("AUTOIMPORT_ADDRESS", run.server.address)
    run.capsys.readouterr()
    assert cli.main(list(listing)) == 0
    assert json.loads(run.capsys.readouterr().out)["auto_imports"] == []


def test_tokens_from_the_environment(
    run: Cli, account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    create = (
        "imports",
        "create",
        "--account",
        account,
        "--service",
        "google_contacts",
        "--external-account",
        "ann@example.com",
    )
    missing = run.run(*create)
    assert missing.code == 1
    assert "  auto_import.credentials.access_token: is required" in missing.err.splitlines()

    monkeypatch.setenv("AUTOIMPORT_ACCESS_TOKEN", "ya29.from-env")
    monkeypatch.setenv("AUTOIMPORT_REFRESH_TOKEN", "1//from-env")
    created = run.json(*create)
    assert created["state"] == "ACTIVE"
    assert "from-env" not in json.dumps(run.json("imports", "history", created["name"]))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["imports", "update", "accounts/a/imports/i"], "nothing to update"),
        (
            [
                "imports",
                "update",
                "accounts/a/imports/i",
                "--customer-tag",
                "x",
                "--lifecycle-stage",
                "y",
            ],
            "criteria options of one service only",
        ),
        (
            ["imports", "update", "accounts/a/imports/i", "--all-contacts", "--subscribed-only"],
            "criteria options of one service only",
        ),
        (
            ["imports", "update", "accounts/a/imports/i", "--tag", "x", "--clear-tags"],
            "not allowed with argument --tag",
        ),
        (["imports", "list"], "--account"),
        (["imports", "sync"], "NAME"),
        (["contacts", "get", "ann@example.com"], "--account"),
        (["contacts", "import-csv", "--account", "a", "/nonexistent/c.csv"], "cannot read"),
        (["contacts", "import-csv", "--account", "a", "--chunk-size", "0", "-"], "1 to 4193280"),
        (["contacts", "import-csv", "--account", "a", "--chunk-size", "5000000", "-"], "1 to "),
        (["accounts", "create-key", "a", "--expires", "soon"], "give a duration such as 30d"),
        (["accounts", "create-key", "a", "--expires", "2027-01-31"], "an RFC 3339 time"),
        (["accounts", "create-key", "a", "--expires", "9" * 30 + "d"], "is too long"),
        (["accounts", "revoke-key", "a"], "KEY_ID"),
        (["--timeout", "0", "accounts", "get", "a"], "greater than 0"),
        (["--ca-cert", "/nonexistent/ca.pem", "accounts", "get", "a"], "cannot read the CA"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, client_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--address", "127.0.0.1:1", *argv]) == 2
    assert message in capsys.readouterr().err


def test_help_documents_the_client_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # as argparse wraps it at any width
    assert "give them before the command" in out
    for option in ("--address", "--token", "--json", "--timeout", "--ca-cert"):
        assert option in out


@pytest.fixture
def tls_server(store_env: dict[str, str], tmp_path: Path) -> Iterator[ServerProcess]:
    cert, key = self_signed_certificate(tmp_path)
    env = {
        **store_env,
        "AUTOIMPORT_TLS_CERT": str(cert),
        "AUTOIMPORT_TLS_KEY": str(key),
    }
    with ServerProcess(env) as process:
        yield process


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_tls_with_ca_cert(
    tls_server: ServerProcess,
    client_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cli_ = Cli(tls_server, capsys)
    assert cli_.run("accounts", "get", "nobody").err.startswith("error: UNAVAILABLE: ")
    monkeypatch.setenv("AUTOIMPORT_CA_CERT", tls_server.env["AUTOIMPORT_TLS_CERT"])
    upserted = cli_.ok("accounts", "upsert", "tls", "--plan", "lite", "--contact-limit", "10")
    assert upserted.fields()["account_id"] == "tls"


# -- syncs, contacts, fields and CSV imports ----------------------------------------------------


def test_syncs_of_a_fresh_import_is_an_empty_table(run: Cli, account: str) -> None:
    name = run.create_shopify(account)["name"]
    listed = run.ok("imports", "syncs", name)
    assert listed.out.splitlines() == [SYNCS_HEADER]
    assert run.json("imports", "syncs", name) == {"syncs": [], "next_page_token": ""}


def test_contacts_of_a_fresh_account(run: Cli, account: str) -> None:
    listed = run.ok("contacts", "list", "--account", account)
    header, count = listed.out.rstrip("\n").split("\n\n")
    assert header == "EMAIL  STATUS  FIRST NAME  LAST NAME  LISTS  TAGS"
    assert count == "0 contacts"
    got = run.json("contacts", "list", "--account", account)
    assert (got["contacts"], got["total_size"]) == ([], "0")


def test_contact_errors(run: Cli, account: str) -> None:
    for verb in ("get", "unsubscribe"):
        unknown = run.run("contacts", verb, "--account", account, "nobody@example.com")
        assert unknown.code == 1, verb
        assert unknown.err.startswith("error: NOT_FOUND: "), verb
        assert unknown.out == ""

    invalid = run.run("contacts", "get", "--account", account, "not-an-email")
    assert invalid.code == 1
    lines = invalid.err.splitlines()
    assert lines[0].startswith("error: INVALID_ARGUMENT: ")
    assert re.match(r"^  email: must be a valid email address", lines[1])


def test_fields_of_a_fresh_account(run: Cli, account: str) -> None:
    listed = run.ok("fields", "list", "--account", account)
    assert listed.out.splitlines() == ["TITLE  PERSONALIZATION TAG  SERVICE  CREATED"]
    assert run.json("fields", "list", "--account", account, "--service", "shopify") == {
        "fields": []
    }
    wrong = run.run("fields", "list", "--account", account, "--service", "shopfy")
    assert wrong.code == 1
    assert "  service: must be one of " in wrong.err


def test_csv_import_end_to_end(run: Cli, account: str, tmp_path: Path) -> None:
    csv = tmp_path / "contacts.csv"
    csv.write_text(
        "Email,First Name,Last Name,Company\n"
        "ann@example.com,Ann,Lee,Acme\n"
        "not-an-email,Nope,Nope,\n"
        "bob@example.com,Bob,Ray,\n"
    )
    imported = run.ok(
        "contacts",
        "import-csv",
        "--account",
        account,
        str(csv),
        "--list-id",
        "news",
        "--tag",
        "csv",
        "--request-id",
        str(uuid.uuid4()),
        "--chunk-size",
        "16",  # the rows arrive split across chunks
    )
    report = imported.fields()
    assert (report["rows"], report["added"], report["skipped_invalid_email"]) == ("3", "2", "1")
    errors = [re.split(r"  +", line) for line in imported.out.split("\n\n")[1].splitlines()]
    assert [row[0] for row in errors] == ["ROW", "3"]

    listed = run.ok("contacts", "list", "--account", account, "--page-size", "1")
    assert listed.table() == [
        ["ann@example.com", "ACTIVE", "Ann", "Lee", "news", "csv"],
        ["bob@example.com", "ACTIVE", "Bob", "Ray", "news", "csv"],
    ]
    assert listed.out.rstrip().endswith("\n\n2 contacts")
    shown = run.ok("contacts", "get", "--account", account, "ann@example.com")
    assert shown.out.rstrip().endswith("\nfields:\n  %COMPANY%: Acme")


@pytest.mark.parametrize("store_env", ["sqlite"], indirect=True)
def test_check_and_preview_before_creating_an_import_and_after(
    store_env: dict[str, str],
    client_env: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The create options describe the import to check or preview; NAME, an existing one. A
    failed check exits 1, with its findings; nothing is created by either."""
    day = "2026-01-01"
    sources = tmp_path / "sources"
    sources.mkdir()
    contacts = [
        {"external_id": "c1", "email": "ann@example.com", "updated_at": f"{day}T00:00:01+00:00"},
        {"external_id": "c2", "email": "", "updated_at": f"{day}T00:00:02+00:00"},
    ]
    write_source(sources, "cli-store", contacts)
    env = {**store_env, "AUTOIMPORT_TEST_SOURCES": str(sources)}
    with ServerProcess(env, "tests.scripted_server") as server:
        run = Cli(server, capsys)
        run.ok("accounts", "upsert", "scripted", "--plan", "lite", "--contact-limit", "100")
        new = ["--account", "scripted", "--service", "shopify", "--external-account", "cli-store"]

        checked = run.ok("imports", "check", *new, "--access-token", "t")
        previewed = run.ok("imports", "preview", *new, "--access-token", "t")

        assert [row[:2] for row in checked.table()] == [
            ["credentials", "ok"],
            ["external account", "ok"],
            ["scopes", "ok"],
            ["quota", "ok"],
        ]
        assert checked.out.rstrip().endswith("everything looks right")
        fields = previewed.fields()
        assert (fields["records"], fields["would_add"], fields["skipped_missing_email"]) == (
            "2",
            "1",
            "1",
        )
        assert "ann@example.com" in previewed.out and "WOULD BE SKIPPED FOR" in previewed.out
        assert run.json("imports", "list", "--account", "scripted")["auto_imports"] == []

        name = run.json("imports", "create", *new, "--access-token", "t")["name"]
        assert run.ok("imports", "preview", name).fields()["would_add"] == "1"
        write_source(sources, "cli-store", contacts, revoked=True)
        refused = run.run("imports", "check", name)
        assert refused.code == 1
        assert refused.table()[0][:2] == ["credentials", "FAIL"]
        assert refused.out.rstrip().endswith("the import would not sync as it is")
        usage = run.run("imports", "check", name, "--service", "shopify")
        assert usage.code == 2 and "give either NAME" in usage.err


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_sync_syncs_contacts_and_fields_on_scripted_sources(
    store_env: dict[str, str],
    client_env: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """End to end on real data: the real server, whose connectors read scripted sources."""
    sources = tmp_path / "sources"
    sources.mkdir()
    write_source(
        sources,
        "cli-store",
        [
            {
                "external_id": "c1",
                "email": "ann@example.com",
                "first_name": "Ann",
                "updated_at": "2026-01-01T00:00:01+00:00",
                "fields": {"total_spent": "12.50"},
            },
            {"external_id": "c2", "email": "broken", "updated_at": "2026-01-01T00:00:02+00:00"},
        ],
    )
    env = {**store_env, "AUTOIMPORT_TEST_SOURCES": str(sources)}
    with ServerProcess(env, "tests.scripted_server") as server:
        run = Cli(server, capsys)
        run.ok("accounts", "upsert", "scripted", "--plan", "lite", "--contact-limit", "100")
        name = run.json(
            "imports",
            "create",
            "--account",
            "scripted",
            "--service",
            "shopify",
            "--external-account",
            "cli-store",
            "--access-token",
            "t",
            "--tag",
            "shop",
        )["name"]

        synced = run.ok("imports", "sync", name)
        report = synced.fields()
        assert (report["outcome"], report["fetched"], report["added"]) == ("COMPLETED", "2", "1")
        assert report["skipped_invalid_email"] == "1"
        skipped = [re.split(r"  +", line) for line in synced.out.split("\n\n")[1].splitlines()]
        assert skipped[0] == ["EXTERNAL ID", "EMAIL", "REASON"]
        assert [row[:2] for row in skipped[1:]] == [["c2", "broken"]]

        syncs = run.ok("imports", "syncs", name).table()
        assert [(row[0], row[1], *row[4:]) for row in syncs] == [
            (report["sync_id"], "COMPLETED", "2", "1", "0", "0", "1", "0", "0")
        ]

        listed = run.ok("contacts", "list", "--account", "scripted")
        assert listed.table() == [["ann@example.com", "ACTIVE", "Ann", "-", "-", "shop"]]
        assert listed.out.rstrip().endswith("\n\n1 contact")
        shown = run.ok("contacts", "get", "--account", "scripted", "ann@example.com")
        assert "\nfields:\n  %SHOPIFY_TOTAL_SPENT%: 12.50" in shown.out
        assert shown.fields()["source_imports"] == name

        fields = run.ok("fields", "list", "--account", "scripted").table()
        assert [row[1:3] for row in fields] == [["%SHOPIFY_TOTAL_SPENT%", "shopify"]]
        unsubscribed = run.ok("contacts", "unsubscribe", "--account", "scripted", "ann@example.com")
        assert unsubscribed.fields()["status"] == "UNSUBSCRIBED"


SYNCS_HEADER = (
    "SYNC ID  OUTCOME  START  END  FETCHED  ADDED  UPDATED  UNCHANGED  SKIPPED  DEFERRED  BLOCKED"
)
NO_DEADLINE = 1e9  # what a servicer's time_remaining() is above when the call has no deadline


class Recorder:
    """What a fake servicer was called with: method, request, deadline left, metadata."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, float, dict[str, str]]] = []

    def record(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        metadata = {k: str(v) for k, v in context.invocation_metadata()}
        self.calls.append((method, request, context.time_remaining(), metadata))

    def requests(self, method: str) -> list[Any]:
        return [request for name, request, *_ in self.calls if name == method]

    def deadline(self) -> float:
        return self.calls[-1][2]


def page_of(pages: list[T], token: str) -> tuple[T, str]:
    """The page a token names ("" the first, else its index), and the next page's token."""
    index = int(token or 0)
    return pages[index], str(index + 1) if index + 1 < len(pages) else ""


class FakeImports(imports_pb2_grpc.AutoImportServiceServicer, Recorder):
    def __init__(self) -> None:
        Recorder.__init__(self)
        self.report = imports_pb2.SyncReport()
        self.pages: list[list[imports_pb2.SyncReport]] = [[]]

    def TriggerSync(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.record("TriggerSync", request, context)
        return self.report

    def ListSyncs(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.record("ListSyncs", request, context)
        syncs, token = page_of(self.pages, request.page_token)
        return imports_pb2.ListSyncsResponse(syncs=syncs, next_page_token=token)


class FakeContacts(contacts_pb2_grpc.ContactServiceServicer, Recorder):
    def __init__(self) -> None:
        Recorder.__init__(self)
        self.report = contacts_pb2.CsvImportReport()
        self.contact = contacts_pb2.Contact()
        self.pages: list[list[contacts_pb2.Contact]] = [[]]
        self.total_size = 0
        # What ImportCsv received: the part of each message, the options, the chunks' sizes,
        # their digest, and their bytes unless keep_bytes is False.
        self.parts: list[str] = []
        self.options = contacts_pb2.CsvImportOptions()
        self.chunk_sizes: list[int] = []
        self.digest = hashlib.sha256()
        self.data = bytearray()
        self.keep_bytes = True

    def GetContact(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.record("GetContact", request, context)
        return self.contact

    def UnsubscribeContact(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.record("UnsubscribeContact", request, context)
        unsubscribed = contacts_pb2.Contact()
        unsubscribed.CopyFrom(self.contact)
        unsubscribed.status = contacts_pb2.Contact.UNSUBSCRIBED
        return unsubscribed

    def ListContacts(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.record("ListContacts", request, context)
        contacts, token = page_of(self.pages, request.page_token)
        return contacts_pb2.ListContactsResponse(
            contacts=contacts, next_page_token=token, total_size=self.total_size
        )

    def ImportCsv(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        self.record("ImportCsv", None, context)
        for request in request_iterator:
            part = request.WhichOneof("part")
            self.parts.append(part)
            if part == "options":
                self.options = request.options
                continue
            self.chunk_sizes.append(len(request.chunk))
            self.digest.update(request.chunk)
            if self.keep_bytes:
                self.data += request.chunk
        return self.report


class FakeFields(fields_pb2_grpc.FieldServiceServicer, Recorder):
    def __init__(self) -> None:
        Recorder.__init__(self)
        self.fields: list[fields_pb2.CustomField] = []

    def ListFields(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.record("ListFields", request, context)
        return fields_pb2.ListFieldsResponse(fields=self.fields)


@dataclass
class FakeServer:
    """A gRPC server in this process whose servicers return canned answers and record calls."""

    address: str
    imports: FakeImports
    contacts: FakeContacts
    fields: FakeFields
    admin_token: str = "fake-token"


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    imports, contacts, fields = FakeImports(), FakeContacts(), FakeFields()
    imports_pb2_grpc.add_AutoImportServiceServicer_to_server(imports, server)
    contacts_pb2_grpc.add_ContactServiceServicer_to_server(contacts, server)
    fields_pb2_grpc.add_FieldServiceServicer_to_server(fields, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield FakeServer(f"127.0.0.1:{port}", imports, contacts, fields)
    finally:
        server.stop(0)


@pytest.fixture
def fake_run(fake: FakeServer, capsys: pytest.CaptureFixture[str], client_env: Path) -> Cli:
    return Cli(fake, capsys)


def timestamp(text: str) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp


def sync_report(**values: Any) -> imports_pb2.SyncReport:
    return imports_pb2.SyncReport(
        import_name="accounts/a/imports/i", start_time=timestamp("2026-11-26T19:00:00Z"), **values
    )


def test_sync_report_with_skipped_contacts(fake_run: Cli, fake: FakeServer) -> None:
    fake.imports.report = sync_report(
        sync_id="s1",
        outcome=imports_pb2.SyncReport.CAPPED,
        end_time=timestamp("2026-11-26T19:01:00Z"),
        fetched=5,
        added=2,
        updated=1,
        skipped_missing_email=1,
        skipped_invalid_email=1,
        deferred=3,
        skipped=[
            imports_pb2.SyncReport.SkippedContact(external_id="c4", reason="no email"),
            imports_pb2.SyncReport.SkippedContact(
                external_id="c5", email="bob@", reason="invalid email: no domain"
            ),
        ],
    )
    shown = fake_run.ok("imports", "sync", "accounts/a/imports/i", "--request-id", "r-1")
    request = fake.imports.requests("TriggerSync")[0]
    assert (request.name, request.request_id) == ("accounts/a/imports/i", "r-1")
    assert fake.imports.calls[0][3]["authorization"] == "Bearer fake-token"
    # The long default deadline of a sync (gRPC rounds deadlines: a few ms either way).
    assert fake.imports.deadline() == pytest.approx(600, abs=5)

    report, skipped = shown.out.rstrip("\n").split("\n\n")
    fields = Result(0, report, "").fields()
    assert (fields["sync_id"], fields["outcome"], fields["end_time"]) == (
        "s1",
        "CAPPED",
        "2026-11-26T19:01:00Z",
    )
    assert (fields["fetched"], fields["added"], fields["deferred"]) == ("5", "2", "3")
    assert "error" not in fields
    assert [re.split(r"  +", line) for line in skipped.splitlines()] == [
        ["EXTERNAL ID", "EMAIL", "REASON"],
        ["c4", "-", "no email"],
        ["c5", "bob@", "invalid email: no domain"],
    ]

    got = fake_run.json("--timeout", "5", "imports", "sync", "accounts/a/imports/i")
    assert fake.imports.deadline() == pytest.approx(5, abs=1)
    assert got["outcome"] == "CAPPED"
    assert [s["external_id"] for s in got["skipped"]] == ["c4", "c5"]


def test_failed_sync_shows_the_error(fake_run: Cli, fake: FakeServer) -> None:
    fake.imports.report = sync_report(
        sync_id="s2", outcome=imports_pb2.SyncReport.FAILED, error="Shopify answered 401"
    )
    shown = fake_run.ok("imports", "sync", "accounts/a/imports/i")
    assert shown.fields()["outcome"] == "FAILED"
    assert shown.fields()["error"] == "Shopify answered 401"
    assert "EXTERNAL ID" not in shown.out


def test_syncs_follow_every_page(fake_run: Cli, fake: FakeServer) -> None:
    fake.imports.pages = [
        [
            sync_report(sync_id="s3", outcome=imports_pb2.SyncReport.RUNNING, fetched=7),
            sync_report(
                sync_id="s2",
                outcome=imports_pb2.SyncReport.LIMIT_REACHED,
                end_time=timestamp("2026-11-26T19:02:00Z"),
                fetched=9,
                added=1,
                updated=2,
                unchanged=3,
                skipped_missing_email=1,
                skipped_invalid_email=2,
                deferred=4,
                blocked_by_limit=5,
            ),
        ],
        [sync_report(sync_id="s1", outcome=imports_pb2.SyncReport.COMPLETED)],
    ]
    listed = fake_run.ok("imports", "syncs", "accounts/a/imports/i", "--page-size", "2")
    assert re.split(r"  +", listed.out.splitlines()[0]) == SYNCS_HEADER.split("  ")
    start = "2026-11-26T19:00:00Z"
    assert listed.table() == [
        ["s3", "RUNNING", start, "-", "7", "0", "0", "0", "0", "0", "0"],
        ["s2", "LIMIT_REACHED", start, "2026-11-26T19:02:00Z", "9", "1", "2", "3", "3", "4", "5"],
        ["s1", "COMPLETED", start, "-", "0", "0", "0", "0", "0", "0", "0"],
    ]
    requests = fake.imports.requests("ListSyncs")
    assert [(r.name, r.page_size, r.page_token) for r in requests] == [
        ("accounts/a/imports/i", 2, ""),
        ("accounts/a/imports/i", 2, "1"),
    ]
    got = fake_run.json("imports", "syncs", "accounts/a/imports/i")
    assert [s["sync_id"] for s in got["syncs"]] == ["s3", "s2", "s1"]
    assert got["next_page_token"] == ""


ANN = contacts_pb2.Contact(
    id="id-ann",
    email="ann@example.com",
    first_name="Ann",
    status=contacts_pb2.Contact.ACTIVE,
    fields={"%SHOPIFY_TOTAL_SPENT%": "120.50", "%SHOPIFY_COMPANY%": "Acme: West"},
    list_ids=["news", "vip"],
    tags=["shop"],
    source_imports=["accounts/a/imports/i"],
    create_time=timestamp("2026-11-26T19:00:00Z"),
)


def test_contacts_list_follows_every_page(fake_run: Cli, fake: FakeServer) -> None:
    bob = contacts_pb2.Contact(
        email="bob@example.com",
        first_name="Bob",
        last_name="Ray",
        status=contacts_pb2.Contact.UNSUBSCRIBED,
    )
    fake.contacts.pages = [[ANN], [bob]]
    fake.contacts.total_size = 2
    listed = fake_run.ok("contacts", "list", "--account", "a", "--page-size", "1")
    assert listed.table() == [
        ["ann@example.com", "ACTIVE", "Ann", "-", "news, vip", "shop"],
        ["bob@example.com", "UNSUBSCRIBED", "Bob", "Ray", "-", "-"],
    ]
    assert listed.out.rstrip("\n").endswith("\n\n2 contacts")
    requests = fake.contacts.requests("ListContacts")
    assert [(r.account_id, r.page_size, r.page_token) for r in requests] == [
        ("a", 1, ""),
        ("a", 1, "1"),
    ]

    fake.contacts.pages, fake.contacts.total_size = [[bob]], 1
    assert fake_run.ok("contacts", "list", "--account", "a").out.rstrip().endswith("\n1 contact")
    got = fake_run.json("contacts", "list", "--account", "a")
    assert ([c["email"] for c in got["contacts"]], got["total_size"]) == (["bob@example.com"], "1")


def test_control_characters_in_values_are_shown_escaped_not_obeyed(
    fake_run: Cli, fake: FakeServer
) -> None:
    mallory = contacts_pb2.Contact(
        email="mallory@example.com",
        first_name="Mal\x1b[2J\x1b[31mlory",  # clear the screen, then red
        last_name="\u202eyrollam",  # shown right to left
        fields={"%NOTES%": "two\nlines\x07"},
    )
    fake.contacts.pages, fake.contacts.total_size = [[mallory]], 1
    fake.contacts.contact = mallory

    listed = fake_run.ok("contacts", "list", "--account", "a").out
    shown = fake_run.ok("contacts", "get", "--account", "a", "mallory@example.com").out

    for out in (listed, shown):
        assert not any(c in out for c in "\x1b\x07\u202e")
        assert "Mal\\x1b[2J\\x1b[31mlory" in out and "\\u202eyrollam" in out
    assert "two\\nlines\\x07" in shown


def test_contact_get_and_unsubscribe_show_custom_fields(fake_run: Cli, fake: FakeServer) -> None:
    fake.contacts.contact = ANN
    shown = fake_run.ok("contacts", "get", "--account", "a", "ann@example.com")
    request = fake.contacts.requests("GetContact")[0]
    assert (request.account_id, request.email) == ("a", "ann@example.com")
    fields = shown.fields()
    assert (fields["email"], fields["status"], fields["list_ids"]) == (
        "ann@example.com",
        "ACTIVE",
        "news, vip",
    )
    assert fields["create_time"] == "2026-11-26T19:00:00Z"
    assert "fields" not in fields
    assert shown.out.rstrip("\n").endswith(
        "\nfields:\n  %SHOPIFY_COMPANY%: Acme: West\n  %SHOPIFY_TOTAL_SPENT%: 120.50"
    )

    unsubscribed = fake_run.ok("contacts", "unsubscribe", "--account", "a", "ann@example.com")
    assert unsubscribed.fields()["status"] == "UNSUBSCRIBED"
    assert fake.contacts.requests("UnsubscribeContact")[0].email == "ann@example.com"
    got = fake_run.json("contacts", "get", "--account", "a", "ann@example.com")
    assert got["fields"] == dict(ANN.fields)

    fake.contacts.contact = contacts_pb2.Contact(email="bob@example.com")
    assert (
        fake_run.ok("contacts", "get", "--account", "a", "bob@example.com").fields()["fields"]
        == "-"
    )


def test_fields_list(fake_run: Cli, fake: FakeServer) -> None:
    fake.fields.fields = [
        fields_pb2.CustomField(
            id="f1",
            title="Shopify Total spent",
            personalization_tag="%SHOPIFY_TOTAL_SPENT%",
            service="shopify",
            create_time=timestamp("2026-11-26T19:00:00Z"),
        )
    ]
    listed = fake_run.ok("fields", "list", "--account", "a", "--service", "shopify")
    assert (
        listed.out.splitlines()[0] == "TITLE                PERSONALIZATION TAG    SERVICE  CREATED"
    )
    assert listed.table() == [
        ["Shopify Total spent", "%SHOPIFY_TOTAL_SPENT%", "shopify", "2026-11-26T19:00:00Z"]
    ]
    request = fake.fields.requests("ListFields")[0]
    assert (request.account_id, request.service) == ("a", "shopify")
    assert fake_run.json("fields", "list", "--account", "a")["fields"][0]["id"] == "f1"


CSV_REPORT = contacts_pb2.CsvImportReport(
    rows=4,
    added=2,
    updated=1,
    duplicates_in_file=1,
    skipped_invalid_email=1,
    fields_created=0,
    errors=[
        contacts_pb2.CsvRowError(row=4, reason="duplicate of row 2"),
        contacts_pb2.CsvRowError(row=5, reason="email: not a valid address"),
    ],
)
CSV = (
    "\ufeffemail,first_name\n"
    "ann@example.com,Ann\n"
    "bob@example.com,Bøb\n"
    "ann@example.com,Ann again\n"
    "nope,Nope\n"
).encode()


def test_import_csv_streams_the_options_then_the_file(
    fake_run: Cli, fake: FakeServer, tmp_path: Path
) -> None:
    csv = tmp_path / "contacts.csv"
    csv.write_bytes(CSV)
    fake.contacts.report = CSV_REPORT
    argv = ("contacts", "import-csv", "--account", "a", str(csv), "--list-id", "news")
    shown = fake_run.ok(
        *argv, "--list-id", "vip", "--tag", "csv", "--request-id", "r-1", "--chunk-size", "7"
    )

    received = fake.contacts
    assert received.parts == ["options"] + ["chunk"] * len(received.chunk_sizes)
    assert received.options == contacts_pb2.CsvImportOptions(
        account_id="a",
        list_ids=["news", "vip"],
        tags=["csv"],
        request_id="r-1",
        size_bytes=len(CSV),
    )
    assert bytes(received.data) == CSV
    *full, last = received.chunk_sizes
    assert set(full) == {7}
    assert 0 < last <= 7
    assert received.calls[0][3]["authorization"] == "Bearer fake-token"
    assert received.deadline() > NO_DEADLINE
    assert shown.err == ""  # stderr is not a terminal: no progress bar

    report, errors = shown.out.rstrip("\n").split("\n\n")
    fields = Result(0, report, "").fields()
    assert (fields["rows"], fields["added"], fields["duplicates_in_file"]) == ("4", "2", "1")
    assert "errors" not in fields
    assert [re.split(r"  +", line) for line in errors.splitlines()] == [
        ["ROW", "REASON"],
        ["4", "duplicate of row 2"],
        ["5", "email: not a valid address"],
    ]


def test_import_csv_json_default_chunks_stdin_and_timeout(
    fake_run: Cli, fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.contacts.report = contacts_pb2.CsvImportReport(rows=4, added=4)
    data = CSV * 40_000  # 4.4 MB: 68 chunks of 64 KiB
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    got = fake_run.json("--timeout", "20", "contacts", "import-csv", "--account", "a", "-")
    assert got == proto_json(fake.contacts.report)
    assert (got["rows"], got["added"], got["updated"]) == ("4", "4", "0")
    assert bytes(fake.contacts.data) == data
    *full, last = fake.contacts.chunk_sizes
    assert set(full) == {65536}
    assert 0 < last <= 65536
    assert fake.contacts.deadline() == pytest.approx(20, abs=2)

    # stdin is now at its end: an empty input sends the options only.
    del fake.contacts.parts[:]
    assert fake_run.ok("contacts", "import-csv", "--account", "a", "-").fields()["rows"] == "4"
    assert fake.contacts.parts == ["options"]


def proto_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("options", "bar"), [((), True), (("--quiet",), False), (("--json",), False)]
)
def test_import_csv_progress_bar_on_a_terminal(
    options: tuple[str, ...],
    bar: bool,
    fake_run: Cli,
    fake: FakeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    csv = tmp_path / "contacts.csv"
    csv.write_bytes(CSV * 1000)
    size = tqdm.format_sizeof(len(CSV) * 1000, divisor=1024)  # as the bar shows it
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    global_options = [o for o in options if o == "--json"]
    verb_options = [o for o in options if o != "--json"]
    fake_run.ok(
        *global_options, "contacts", "import-csv", "--account", "a", str(csv), *verb_options
    )
    shown = terminal.getvalue()
    if bar:
        assert "contacts.csv: 100%" in shown
        assert f"{size}/{size}" in shown
    else:
        assert shown == ""


def test_import_csv_of_a_large_file_never_holds_it_in_memory(
    fake_run: Cli, fake: FakeServer, tmp_path: Path
) -> None:
    size = 50 * 1024 * 1024
    rows = b"".join(b"someone.%06d@example.com,Some,One\n" % i for i in range(30_000))
    expected = hashlib.sha256()
    csv = tmp_path / "large.csv"
    with csv.open("wb") as file:
        for i in range(50):  # 50 blocks of 1 MiB, each different
            block = b"%02d" % i + rows[2 : 1024 * 1024]
            file.write(block)
            expected.update(block)
    assert csv.stat().st_size == size
    fake.contacts.keep_bytes = False  # the fake server runs in this process too

    tracemalloc.start()
    try:
        fake_run.ok("contacts", "import-csv", "--account", "a", str(csv))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fake.contacts.digest.hexdigest() == expected.hexdigest()
    assert sum(fake.contacts.chunk_sizes) == size
    assert len(fake.contacts.chunk_sizes) == size // 65536
    assert peak < size / 20, f"peak {peak} bytes while streaming {size} bytes"

"""The `autoimport accounts|imports` client, run in-process against real servers."""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autoimport.v1 import imports_pb2
from service import cli
from tests.support import ServerProcess, self_signed_certificate

CLIENT_VARIABLES = (
    "AUTOIMPORT_ADDRESS",
    "AUTOIMPORT_TOKEN",
    "AUTOIMPORT_CA_CERT",
    "AUTOIMPORT_ACCESS_TOKEN",
    "AUTOIMPORT_REFRESH_TOKEN",
)
ADMIN = object()  # run() default: the server's admin token


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
    def __init__(self, server: ServerProcess, capsys: pytest.CaptureFixture[str]):
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
    assert listed.out.rstrip().endswith(
        "imports per service: google_contacts 1, hubspot 1, shopify 1"
    )
    only_shopify = run.ok("imports", "list", "--account", account, "--service", "shopify")
    assert [row[0] for row in only_shopify.table()] == [shopify["name"]]


def test_list_follows_every_page(run: Cli, account: str) -> None:
    names = {run.create_shopify(account, "--display-name", f"shop {i}")["name"] for i in range(5)}
    listed = run.json("imports", "list", "--account", account, "--page-size", "2")
    assert {i["name"] for i in listed["auto_imports"]} == names
    assert listed["counts_by_service"] == {"google_contacts": 0, "shopify": 5, "hubspot": 0}
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
    assert set(services) == {"google_contacts", "shopify", "hubspot"}
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
    out = capsys.readouterr().out
    assert "give them before the command" in out
    for option in ("--address", "--token", "--json", "--timeout", "--ca-cert"):
        assert option in out


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[ServerProcess]:
    cert, key = self_signed_certificate(tmp_path)
    env = {
        "AUTOIMPORT_DATA_DIR": str(tmp_path / "data"),
        "AUTOIMPORT_TLS_CERT": str(cert),
        "AUTOIMPORT_TLS_KEY": str(key),
    }
    with ServerProcess(env) as process:
        yield process


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

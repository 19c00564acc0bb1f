"""Settings from AUTOIMPORT_* variables: every source's settings (base URLs, OAuth client)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import SOURCES
from service import logs
from service.config import ConfigError, RunProjections, Settings


def settings(tmp_path: Path, **variables: str) -> Settings:
    env = {"AUTOIMPORT_DATA_DIR": str(tmp_path)}
    env.update({f"AUTOIMPORT_{name}": value for name, value in variables.items()})
    return Settings.from_env(env)


SETTINGS = [(source, setting) for source in SOURCES.values() for setting in source.settings]
URL_SETTINGS = [(source, setting) for source, setting in SETTINGS if setting.url]


def test_connectors_read_the_real_services_by_default(tmp_path: Path):
    connectors = settings(tmp_path).connectors

    assert connectors.of(SOURCES["google_contacts"])["url"] == "https://people.googleapis.com"
    assert connectors.of(SOURCES["google_contacts"])["oauth_url"] == "https://oauth2.googleapis.com"
    assert connectors.of(SOURCES["shopify"])["url"] == ""  # each shop's own
    assert connectors.of(SOURCES["hubspot"])["url"] == "https://api.hubapi.com"
    for source, setting in SETTINGS:
        assert connectors.of(source)[setting.name] == setting.default


@pytest.mark.parametrize(("source", "setting"), URL_SETTINGS, ids=[s.env for _, s in URL_SETTINGS])
def test_each_base_url_can_point_at_an_emulator_or_a_proxy(tmp_path: Path, source, setting):
    variable = setting.env.removeprefix("AUTOIMPORT_")
    connectors = settings(tmp_path, **{variable: "https://proxy.internal/x/"}).connectors

    assert connectors.of(source)[setting.name] == "https://proxy.internal/x"
    others = [(o, s) for o, s in SETTINGS if s is not setting]
    assert all(connectors.of(o)[s.name] == s.default for o, s in others)


def test_a_secret_setting_never_shows_in_the_settings_repr(tmp_path: Path):
    connectors = settings(
        tmp_path,
        GOOGLE_CLIENT_ID="client-1.apps.googleusercontent.com",
        GOOGLE_CLIENT_SECRET="GOCSPX-secret",
    ).connectors

    assert connectors.of(SOURCES["google_contacts"])["client_id"] == (
        "client-1.apps.googleusercontent.com"
    )
    assert connectors.secrets() == ["GOCSPX-secret"]
    assert "GOCSPX-secret" not in repr(connectors)
    assert "client-1.apps.googleusercontent.com" in repr(connectors)


def test_every_setting_is_named_by_the_prefix_and_its_service():
    names = [setting.env for _, setting in SETTINGS]
    assert len(names) == len(set(names))
    assert all(name.startswith("AUTOIMPORT_") for name in names)


def test_a_base_url_that_is_not_http_is_refused_by_name(tmp_path: Path):
    with pytest.raises(ConfigError, match="AUTOIMPORT_HUBSPOT_URL must be an http"):
        settings(tmp_path, HUBSPOT_URL="api.hubapi.com")


@pytest.mark.parametrize("given", ["GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"])
def test_half_an_oauth_client_is_refused(tmp_path: Path, given: str):
    with pytest.raises(ConfigError, match="GOOGLE_CLIENT_ID and AUTOIMPORT_GOOGLE_CLIENT_SECRET"):
        settings(tmp_path, **{given: "x"})


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("", RunProjections.PROCESS),
        ("process", RunProjections.PROCESS),
        ("yes", RunProjections.PROCESS),  # what it meant before: this server runs them
        ("Thread", RunProjections.THREAD),
        ("no", RunProjections.NO),
        ("0", RunProjections.NO),
    ],
)
def test_run_projections_says_where_the_server_runs_the_projector(
    tmp_path: Path, value: str, mode: RunProjections
):
    assert settings(tmp_path, RUN_PROJECTIONS=value).run_projections is mode


def test_the_message_limit_is_4_mib_unless_set_and_a_value_out_of_range_is_refused(
    tmp_path: Path,
):
    assert settings(tmp_path).max_message_bytes == 4 * 1024 * 1024
    assert settings(tmp_path, MAX_MESSAGE_BYTES="65536").max_message_bytes == 65536
    for bad in ("0", "1023", "64MiB", str(64 * 1024 * 1024 + 1)):
        with pytest.raises(ConfigError, match=r"MAX_MESSAGE_BYTES must be .* 1024 to 67108864"):
            settings(tmp_path, MAX_MESSAGE_BYTES=bad)


def test_an_unknown_run_projections_value_is_refused_with_the_ones_it_takes(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"RUN_PROJECTIONS must be process .* thread or no"):
        settings(tmp_path, RUN_PROJECTIONS="sometimes")


def test_a_child_projector_reads_the_same_store_keys_and_lease_as_its_server(tmp_path: Path):
    server = settings(
        tmp_path,
        DATABASE_URL="postgresql://u:pw@db.internal:5433/contacts",
        DATABASE_SCHEMA="tenant_7",
        CIPHER_KEY="k" * 44,
        ADMIN_TOKEN="adm_given",
        LEASE_TIMEOUT="2.5",
    )

    child = Settings.from_env(server.projector_env())

    same = ("data_dir", "database_url", "database_schema", "cipher_key", "admin_token")
    assert [getattr(child, name) for name in same] == [getattr(server, name) for name in same]
    assert child.lease_timeout == 2.5


def test_previous_admin_tokens_are_a_comma_separated_list(tmp_path: Path):
    given = settings(tmp_path, ADMIN_TOKEN="adm_now", ADMIN_TOKEN_PREVIOUS=" adm_a, ,adm_b ,")

    assert (given.admin_token, given.previous_admin_tokens) == ("adm_now", ("adm_a", "adm_b"))
    assert settings(tmp_path, ADMIN_TOKEN="adm_now").previous_admin_tokens == ()


def test_previous_admin_tokens_never_show_in_the_logs(tmp_path: Path):
    # Tokens of no known shape (an operator's own): only hide_secrets_of hides them.
    given = settings(tmp_path, ADMIN_TOKEN_PREVIOUS="old-token-1a2b3c,older-token-4d5e6f")

    logs.hide_secrets_of(given)

    line = logs.scrub("tokens old-token-1a2b3c and older-token-4d5e6f")
    assert "old-token-1a2b3c" not in line and "older-token-4d5e6f" not in line

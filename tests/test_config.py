"""Settings from AUTOIMPORT_* variables: every source's settings (base URLs, OAuth client)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import SOURCES
from service.config import ConfigError, Settings


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

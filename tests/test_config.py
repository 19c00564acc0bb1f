"""Settings from AUTOIMPORT_* variables: the connectors' base URLs and Google's OAuth client."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import ConnectorSettings
from service.config import ConfigError, Settings


def settings(tmp_path: Path, **variables: str) -> Settings:
    env = {"AUTOIMPORT_DATA_DIR": str(tmp_path)}
    env.update({f"AUTOIMPORT_{name}": value for name, value in variables.items()})
    return Settings.from_env(env)


def test_connectors_read_the_real_services_by_default(tmp_path: Path):
    connectors = settings(tmp_path).connectors

    assert connectors == ConnectorSettings(
        google_contacts_url="https://people.googleapis.com",
        google_oauth_url="https://oauth2.googleapis.com",
        shopify_url="",
        hubspot_url="https://api.hubapi.com",
    )


def test_each_base_url_can_point_at_an_emulator_or_a_proxy(tmp_path: Path):
    connectors = settings(
        tmp_path,
        GOOGLE_CONTACTS_URL="http://127.0.0.1:8001/",
        GOOGLE_OAUTH_URL="http://127.0.0.1:8002",
        SHOPIFY_URL="http://127.0.0.1:8003",
        HUBSPOT_URL="https://proxy.internal/hubspot/",
        GOOGLE_CLIENT_ID="client-1.apps.googleusercontent.com",
        GOOGLE_CLIENT_SECRET="GOCSPX-secret",
    ).connectors

    assert connectors.google_contacts_url == "http://127.0.0.1:8001"
    assert connectors.google_oauth_url == "http://127.0.0.1:8002"
    assert connectors.shopify_url == "http://127.0.0.1:8003"
    assert connectors.hubspot_url == "https://proxy.internal/hubspot"
    assert connectors.google_client_id == "client-1.apps.googleusercontent.com"
    assert "GOCSPX-secret" not in repr(connectors)


def test_a_base_url_that_is_not_http_is_refused_by_name(tmp_path: Path):
    with pytest.raises(ConfigError, match="AUTOIMPORT_HUBSPOT_URL must be an http"):
        settings(tmp_path, HUBSPOT_URL="api.hubapi.com")


@pytest.mark.parametrize("given", ["GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"])
def test_half_an_oauth_client_is_refused(tmp_path: Path, given: str):
    with pytest.raises(ConfigError, match="GOOGLE_CLIENT_ID and AUTOIMPORT_GOOGLE_CLIENT_SECRET"):
        settings(tmp_path, **{given: "x"})

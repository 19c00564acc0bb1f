"""connectors.http's clients: one TLS context per process, and it still verifies certificates."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from connectors.http import new_client
from tests.support import self_signed_certificate, web_server


def test_every_client_refuses_a_certificate_no_trusted_ca_signed(tmp_path: Path):
    with web_server(200, tls=self_signed_certificate(tmp_path)) as url:
        for _ in range(2):  # the second client reuses the first one's context
            with new_client(url, {}) as client, pytest.raises(httpx.ConnectError) as raised:
                client.get("/")
            assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)

"""`python -m tests.scripted_server`: the real server (as `autoimport serve`), whose connectors
read scripted sources from JSON files, for end-to-end tests of syncs over gRPC.

AUTOIMPORT_TEST_SOURCES names a directory with one `<external account>.json` per external
account: {"contacts": [{"external_id", "email", "updated_at", ...}], "page_size": 100,
"page_delay": 0.0, "hold_at_page": n, "revoked": false}. The file is read again for every page,
so tests can edit it at any time. `revoked`: the source refuses the credentials as revoked (the
import moves to NEEDS_REAUTH); a string is the service's words for it. `hold_at_page`: a gate; a
sync about to read its n-th page (from 0) writes its process id into `<external account>.held`
and waits until the file no longer holds that page.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors.base import (
    CONNECTION_CHECKS,
    Connector,
    Finding,
    ReauthRequired,
    credentials_rejected,
)
from domain.auto_import import AutoImport
from domain.sources import Criteria
from domain.sync import ContactPage
from service import logs
from service.config import ConfigError, Settings
from service.server import serve
from tests.scripted import ScriptedConnector, ScriptedSource


def write_source(
    directory: Path, external_account: str, contacts: list[dict[str, Any]], **options: Any
) -> None:
    path = directory / f"{external_account}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"contacts": contacts, **options}))
    temporary.replace(path)  # atomic: a page never reads half a file


class FileConnector:
    def __init__(self, path: Path):
        self.path = path
        self.lag = ScriptedConnector(ScriptedSource()).lag
        self.pages = 0

    def close(self) -> None:
        pass  # holds nothing

    def _read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {"contacts": []}

    def fetch_page(
        self, criteria: Criteria, cursor: str, until: datetime, *, deadline: float | None = None
    ) -> ContactPage:
        data = self._read()
        if data.get("hold_at_page") == self.pages:
            temporary = self.path.with_suffix(f".held-{os.getpid()}")
            temporary.write_text(str(os.getpid()))
            temporary.replace(self.path.with_suffix(".held"))  # never seen empty
            while data.get("hold_at_page") == self.pages:  # until the test opens the gate
                time.sleep(0.02)
                data = self._read()
        self.pages += 1
        time.sleep(data.get("page_delay", 0.0))
        if revoked := data.get("revoked"):
            words = revoked if isinstance(revoked, str) else "the scripted source revoked the grant"
            raise ReauthRequired(f"{words}: reconnect the account")
        source = ScriptedSource()
        for contact in data["contacts"]:
            values = dict(contact)
            updated_at = datetime.fromisoformat(values.pop("updated_at"))
            source.put(values.pop("external_id"), values.pop("email"), updated_at, **values)
        connector = ScriptedConnector(source, page_size=data.get("page_size", 100))
        return connector.fetch_page(criteria, cursor, until)

    def check_connection(
        self, criteria: Criteria, external_account: str, *, deadline: float | None = None
    ) -> list[Finding]:
        """Every check passes, unless the file says the grant is `revoked`."""
        if self._read().get("revoked"):
            return credentials_rejected("the scripted source revoked the grant")
        return [Finding(c, True, f"scripted: {external_account}") for c in CONNECTION_CHECKS]


def main() -> int:
    logs.configure()  # as `autoimport serve` does
    directory = Path(os.environ["AUTOIMPORT_TEST_SOURCES"])

    def connector_for(auto_import: AutoImport) -> Connector:
        return FileConnector(directory / f"{auto_import.external_account}.json")

    try:
        settings = Settings.from_env()
        logs.hide_secrets_of(settings)
        serve(settings, connector_for)
    except ConfigError as e:
        print(f"autoimport: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

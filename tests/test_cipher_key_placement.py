"""Where the cipher key is kept: on PostgreSQL, a key generated into the data directory (beside
the server's other files and their backups, not in a secret store) is warned about at start-up
and by `autoimport doctor`; a key given as AUTOIMPORT_CIPHER_KEY, or SQLite's embedded default,
is not."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from service import doctor
from tests.conftest import STORES
from tests.support import ServerProcess, store_env

WARNING = "the cipher key is in"


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("key_given", [True, False])
def test_a_generated_key_on_postgresql_is_warned_about(store: str, key_given: bool, tmp_path: Path):
    with store_env(store, tmp_path) as env:
        env = dict(env)
        if not key_given:
            env.pop("AUTOIMPORT_CIPHER_KEY", None)
        with ServerProcess(env) as server:
            log = "".join(server.output)
            full_env = server.env
        out = io.StringIO()
        code = doctor.run(out, full_env, lag_wait=0.1)

    warned = store == "postgres" and not key_given
    warnings = [line for line in log.splitlines() if WARNING in line]
    assert bool(warnings) is warned
    assert all('"level": "WARNING"' in line and "CIPHER_KEY" in line for line in warnings)
    lines = out.getvalue().splitlines()
    assert (
        any(line.startswith("WARN  cipher key: the cipher key is in") for line in lines) is warned
    )
    failed = [line for line in lines if line.startswith("FAIL")]
    assert code == (1 if failed else 0)  # a warning is not a problem

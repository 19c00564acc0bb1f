"""SIGKILL of the projector process at seeded random moments while syncs and uploads go on: its
server starts a new one, which carries on from its tracking records. Writes never wait on it,
so every call finishes; afterwards every promise of tests/invariants.py holds, the read model
equal to a rebuild from the events (each event applied once, none skipped).

The world and the work are tests/faults/test_kills.py's; here the server lives on and only its
projector dies, a third of KILLS times a store: the server waits longer before each restart of a
child that lived under 30 s (1, 2, 4 ... 30 s: a crash loop must not spin), so kills come slower."""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from service.config import Settings
from service.projector import MAX_PAUSE
from tests.conftest import STORES
from tests.faults import KILLS, SEED
from tests.faults.test_kills import INTERVAL, World, finish, set_up, some_work
from tests.invariants import broken_promises
from tests.support import ServerProcess, projector_pid, store_env, wait_for
from tests.test_api_sync import SCRIPTED

PROJECTOR_KILLS = max(2, KILLS // 3)


def projectors_started(server: ServerProcess) -> int:
    return len(re.findall(r"started the projector process", "".join(server.output)))


@pytest.mark.parametrize("store", STORES)
def test_projector_kills_during_syncs_and_uploads_apply_each_event_once(store: str, tmp_path: Path):
    rng = random.Random(f"{SEED}/projector/{store}")
    sources = tmp_path / "sources"
    sources.mkdir()
    world = World(sources)
    done: list[str] = []
    with store_env(store, tmp_path) as env:
        env = {
            **env,
            "AUTOIMPORT_TEST_SOURCES": str(sources),
            "AUTOIMPORT_SYNC_INTERVAL": str(INTERVAL),
        }
        with ServerProcess(env, SCRIPTED) as server, server.client(server.admin_token) as admin:
            set_up(admin, world)
            for kill in range(PROJECTOR_KILLS):
                what, work = some_work(rng, admin, world, kill)
                outcome: list[str] = []

                def run(work: Any = work, outcome: list[str] = outcome) -> None:
                    try:
                        work()
                        outcome.append("finished")
                    except grpc.RpcError as e:
                        outcome.append(f"{e.code().name}: {e.details()}")

                started = projectors_started(server)
                thread = threading.Thread(target=run)
                thread.start()
                time.sleep(rng.uniform(0.0, 0.8))
                os.kill(projector_pid(server), signal.SIGKILL)
                thread.join(timeout=60)
                done.append(f"kill {kill}: {what}: {outcome}")
                # A new projector runs before the next kill: each kill meets one mid-work.
                wait_for(
                    lambda: projectors_started(server),
                    lambda n, s=started: n > s,
                    timeout=MAX_PAUSE + 30,
                )
            finish(admin, world)
            broken = broken_promises(Settings.from_env(server.env), admin, world.expected())
        log = "".join(server.output)

    print("\n".join(done))
    assert [line for line in done if "['finished']" not in line] == [], "a write failed"
    assert broken == [], f"seed {SEED}, after:\n" + "\n".join(done)
    assert log.count("exited (killed by SIGKILL)") == PROJECTOR_KILLS

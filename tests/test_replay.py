"""`autoimport replay --verify`: a rebuild from every event equals the live read model, and a
tampered row is found (design.md invariant 7)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from service.config import Settings
from service.replay import verify
from tests.conftest import STORES
from tests.support import ROOT
from tests.test_sync import World


@pytest.fixture
def synced(store_env: dict[str, str]) -> World:
    world = World(Settings.from_env(store_env))
    world.account(limit=300)
    first, second = world.new_import("store-a"), world.new_import("store-b")
    world.source("store-a").fill(200, prefix="a")
    world.source("store-b").fill(200, prefix="b")
    world.source("store-b").put("x", "broken-email")
    world.sync(first)
    world.sync(second)
    world.app.unsubscribe_contact("acme", "a000003@example.com", actor="admin")
    world.app.pause_import("acme", second.id, actor="admin")
    world.contacts()  # the live views caught up
    yield world
    world.close()


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_replay_verify_finds_the_rebuilt_views_identical(synced: World, store_env: dict[str, str]):
    out = io.StringIO()

    assert verify(Settings.from_env(store_env), out) == 0
    assert "identical" in out.getvalue()


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_replay_verify_reports_a_tampered_row(synced: World, store_env: dict[str, str]):
    contact = synced.views.get_contact("acme", "a000007@example.com")
    assert contact is not None
    with synced.views.datastore.transaction(commit=True) as c:
        c.execute(
            synced.views.sql(
                "UPDATE {t}contacts SET first_name = 'tampered' WHERE contact_id = :id"
            ),
            {"id": contact.contact_id},
        )
    out = io.StringIO()

    assert verify(Settings.from_env(store_env), out) == 1
    assert (
        f"contacts {contact.contact_id}: first_name is 'tampered' live, '' rebuilt"
        in out.getvalue()
    )


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_the_replay_command_exits_with_the_verdict(synced: World, store_env: dict[str, str]):
    command = [sys.executable, "-m", "service.cli", "replay", "--verify"]
    env = {**os.environ, **store_env}

    same = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    with synced.views.datastore.transaction(commit=True) as c:
        c.execute(synced.views.sql("DELETE FROM {t}syncs"))
    different = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert (same.returncode, different.returncode) == (0, 1), same.stderr + different.stderr
    assert "missing from the live view" in different.stdout

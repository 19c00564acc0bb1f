"""Invariant 4 through the real sync engine: one external account has one 500-per-window budget,
however its imports spell it (on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain.auto_import import AutoImport
from domain.import_settings import Credentials, NewImport
from service.config import Settings
from tests.conftest import STORES
from tests.test_sync import World

pytestmark = pytest.mark.parametrize("store_env", STORES, indirect=True)


@pytest.fixture
def world(store_env: dict[str, str]) -> Iterator[World]:
    w = World(Settings.from_env(store_env))
    yield w
    w.close()


def google_import(world: World, external_account: str) -> AutoImport:
    new = NewImport(
        "google_contacts", external_account, Credentials("token", refresh_token="refresh")
    )
    return world.app.create_import("acme", new, actor="admin")


def test_two_spellings_of_one_gmail_account_share_one_budget(world: World):
    world.account()
    dotted = google_import(world, "John.Doe@gmail.com")
    tagged = google_import(world, "johndoe+crm@googlemail.com")
    # Each import keeps the spelling its creator gave, and so reads its own scripted source.
    assert (dotted.external_account, tagged.external_account) == (
        "john.doe@gmail.com",
        "johndoe+crm@googlemail.com",
    )
    world.source(dotted.external_account).fill(400, prefix="d")
    world.source(tagged.external_account).fill(400, prefix="t")

    first = world.sync(dotted)
    second = world.sync(tagged)
    world.clock.next_window()
    third = world.sync(tagged)

    assert (first.outcome, first.added) == ("COMPLETED", 400)
    assert (second.outcome, second.added) == ("CAPPED", 100)
    assert (third.outcome, third.added) == ("COMPLETED", 300)
    assert len(world.contacts()) == 800

"""Accounts stored before API keys had a lifecycle (ApiKeyCreated version 1: key id and actor
only; snapshots listing api_key_ids) load with today's code through eventsourcing's upcasting
(class_version 2), from their events and from their snapshot; their keys still open the account,
and can be listed and revoked.

tests/fixtures/account_history_v1.json holds them as the code of commit b6a8394 stored them: an
account registered, a key created, three contacts added, a second key, a change of plan, a
snapshot; the ApiKey index of each key, and the two (test) keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain.account import Account, KeyStanding
from service.application import AutoImports
from service.errors import ApiKeyRevoked
from tests.test_stored_history import _stored

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "account_history_v1.json").read_text())
KEYS: dict[str, str] = FIXTURE["keys"]
ACCOUNT_ID = Account.create_id("acme")


def _app(*, with_snapshots: bool) -> AutoImports:
    app = AutoImports({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.recorder.insert_events([_stored(r) for r in FIXTURE["events"]])
    if with_snapshots:
        assert app.snapshots is not None
        app.snapshots.recorder.insert_events([_stored(r) for r in FIXTURE["snapshots"]])
    return app


def test_version_1_key_events_decode_with_the_attributes_of_version_2():
    mapper = _app(with_snapshots=False).mapper
    rows = [r for r in FIXTURE["events"] if r["topic"].endswith("Account.ApiKeyCreated")]

    created = [mapper.to_domain_event(_stored(row)) for row in rows]

    assert [type(e) for e in created] == [Account.ApiKeyCreated] * 2
    assert [e.key_id for e in created] == list(KEYS)
    for event in created:
        assert event.prefix == f"aik_{event.key_id}" == KEYS[event.key_id][:12]
        assert (event.create_time, event.expire_time) == (event.timestamp, None)
        assert json.loads(mapper.to_stored_event(event).state)["class_version"] == 2


@pytest.mark.parametrize("with_snapshots", [False, True])
def test_an_account_stored_by_version_1_loads_with_a_record_of_each_key(with_snapshots: bool):
    account: Account = _app(with_snapshots=with_snapshots).repository.get(ACCOUNT_ID)

    assert (account.plan, account.contact_limit, account.contact_count) == ("plus", 5000, 3)
    keys = account.list_api_keys()
    assert [k.key_id for k in keys] == list(KEYS)
    for key in keys:
        assert key.prefix == KEYS[key.key_id][:12]
        assert (key.expire_time, key.revoke_time) == (None, None)
        assert key.standing(key.create_time or account.modified_on) is KeyStanding.VALID
        if with_snapshots:  # a version 1 snapshot kept only the ids
            assert (key.creator, key.create_time) == ("", None)
        else:
            assert key.creator == "admin" and key.create_time is not None


@pytest.mark.parametrize("with_snapshots", [False, True])
def test_keys_created_under_version_1_still_open_the_account_and_can_be_revoked(
    with_snapshots: bool,
):
    app = _app(with_snapshots=with_snapshots)
    first, second = KEYS

    assert app.identify_api_key(KEYS[first]) == ("acme", first)
    assert app.identify_api_key(KEYS[second]) == ("acme", second)

    revoked = app.revoke_api_key("acme", first, actor=f"key:{second}")

    assert revoked.revoke_time is not None
    with pytest.raises(ApiKeyRevoked):
        app.identify_api_key(KEYS[first])
    assert app.identify_api_key(KEYS[second]) == ("acme", second)

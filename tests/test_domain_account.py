"""Unit tests of the Account aggregate and of the ApiKey index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from eventsourcing.application import Application
from hypothesis import given
from hypothesis import strategies as st

from domain.account import (
    MAX_PLAN_LENGTH,
    Account,
    ApiKey,
    ApiKeyInfo,
    KeyStanding,
    UnknownApiKey,
    api_key_prefix,
)
from domain.auto_import import AutoImport
from domain.errors import ValidationError

ACTOR = "admin@example.com"


def register(account_id: str = "acct-1", plan: str = "pro", contact_limit: int = 1000) -> Account:
    return Account.register(account_id, plan, contact_limit, actor=ACTOR)


def registered(**kwargs) -> Account:
    """A new account whose Registered event was already collected."""
    account = register(**kwargs)
    account.collect_events()
    return account


def refused_fields(account_id: str, plan: str, contact_limit: int) -> list[str]:
    with pytest.raises(ValidationError) as excinfo:
        register(account_id, plan, contact_limit)
    return [v.field for v in excinfo.value.violations]


# -- register -----------------------------------------------------------------------------------


def test_register_records_a_registered_event_with_every_field_and_the_actor():
    account = Account.register("acct-1", "pro", 1000, actor="bob")

    events = account.collect_events()
    assert [type(e) for e in events] == [Account.Registered]
    assert events[0].originator_id == account.id
    assert events[0].account_id == "acct-1"
    assert events[0].plan == "pro"
    assert events[0].contact_limit == 1000
    assert events[0].actor == "bob"


def test_register_gives_an_account_without_contacts_or_keys():
    account = register("acct-1", "pro", 1000)

    assert account.id == Account.create_id("acct-1")
    assert account.version == 1
    assert account.account_id == "acct-1"
    assert account.plan == "pro"
    assert account.contact_limit == 1000
    assert account.contact_count == 0
    assert account.api_key_ids == []


def test_register_strips_the_plan():
    account = register(plan="  pro  ")

    assert account.plan == "pro"
    assert account.collect_events()[0].plan == "pro"


@pytest.mark.parametrize("account_id", ["a", "acct-1", "ACCT_2", "0", "a" * 64])
def test_valid_account_id_is_accepted(account_id):
    assert register(account_id=account_id).account_id == account_id


@pytest.mark.parametrize(
    "account_id", ["", " ", "acct 1", " acct", "a/b", "a.b", "a@b", "é", "a" * 65]
)
def test_invalid_account_id_is_refused(account_id):
    assert refused_fields(account_id, "pro", 10) == ["account_id"]


@pytest.mark.parametrize("plan", ["", "   ", "p" * (MAX_PLAN_LENGTH + 1)])
def test_missing_or_too_long_plan_is_refused(plan):
    assert refused_fields("acct-1", plan, 10) == ["plan"]


def test_plan_of_the_maximum_length_is_accepted():
    assert register(plan="p" * MAX_PLAN_LENGTH).plan == "p" * MAX_PLAN_LENGTH


@pytest.mark.parametrize("contact_limit", [0, -1, -1000])
def test_contact_limit_that_is_not_positive_is_refused(contact_limit):
    assert refused_fields("acct-1", "pro", contact_limit) == ["contact_limit"]


def test_contact_limit_of_one_is_accepted():
    assert register(contact_limit=1).contact_limit == 1


def test_register_reports_every_violation_at_once():
    assert refused_fields("bad id", "", 0) == ["account_id", "plan", "contact_limit"]


# -- change_plan --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "contact_limit"),
    [("business", 1000), ("pro", 5000), ("business", 5000), ("  business  ", 1000)],
    ids=["plan", "contact_limit", "both", "plan-with-spaces"],
)
def test_change_plan_emits_plan_changed_when_something_changes(plan, contact_limit):
    account = registered(plan="pro", contact_limit=1000)

    account.change_plan(plan, contact_limit, actor="bob")

    events = account.collect_events()
    assert [type(e) for e in events] == [Account.PlanChanged]
    assert events[0].plan == plan.strip()
    assert events[0].contact_limit == contact_limit
    assert events[0].actor == "bob"
    assert (account.plan, account.contact_limit) == (plan.strip(), contact_limit)
    assert account.version == 2


@pytest.mark.parametrize("plan", ["pro", "  pro "])
def test_change_plan_without_change_emits_no_event(plan):
    account = registered(plan="pro", contact_limit=1000)

    account.change_plan(plan, 1000, actor=ACTOR)

    assert account.collect_events() == []
    assert account.version == 1


def test_change_plan_to_a_limit_below_the_contacts_held_is_allowed():
    account = registered(contact_limit=1000)
    account.contact_count = 500

    account.change_plan("free", 100, actor=ACTOR)

    assert account.contact_limit == 100
    assert account.contact_count == 500


@pytest.mark.parametrize(
    ("plan", "contact_limit", "fields"),
    [
        ("", 1000, ["plan"]),
        ("p" * (MAX_PLAN_LENGTH + 1), 1000, ["plan"]),
        ("pro", 0, ["contact_limit"]),
        (" ", -5, ["plan", "contact_limit"]),
    ],
)
def test_change_plan_with_invalid_values_is_refused_and_changes_nothing(
    plan, contact_limit, fields
):
    account = registered(plan="pro", contact_limit=1000)

    with pytest.raises(ValidationError) as excinfo:
        account.change_plan(plan, contact_limit, actor=ACTOR)

    assert [v.field for v in excinfo.value.violations] == fields
    assert account.collect_events() == []
    assert (account.plan, account.contact_limit) == ("pro", 1000)


# -- API keys -----------------------------------------------------------------------------------

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def add_key(account: Account, key_id: str = "key-1", **kwargs) -> ApiKey:
    kwargs = {"actor": ACTOR, "now": NOW, **kwargs}
    return account.add_api_key(key_id, f"hash-of-{key_id}", prefix=f"aik_{key_id}", **kwargs)


def test_add_api_key_records_the_key_its_prefix_creator_and_times():
    account = registered()

    add_key(account, "key-1", actor="bob", expire_time=NOW + timedelta(days=30))

    events = account.collect_events()
    assert [type(e) for e in events] == [Account.ApiKeyCreated]
    assert (events[0].key_id, events[0].actor, events[0].prefix) == ("key-1", "bob", "aik_key-1")
    assert (events[0].create_time, events[0].expire_time) == (NOW, NOW + timedelta(days=30))
    assert account.api_key_ids == ["key-1"]
    assert account.api_key_of("key-1") == ApiKeyInfo(
        key_id="key-1",
        prefix="aik_key-1",
        creator="bob",
        create_time=NOW,
        expire_time=NOW + timedelta(days=30),
        revoke_time=None,
    )
    assert account.version == 2


def test_add_api_key_keeps_every_key_in_order():
    account = registered()

    add_key(account, "key-1")
    add_key(account, "key-2")

    assert account.api_key_ids == ["key-1", "key-2"]
    assert [k.key_id for k in account.list_api_keys()] == ["key-1", "key-2"]


def test_a_key_without_expiry_never_expires():
    account = registered()

    add_key(account)

    key = account.api_key_of("key-1")
    assert key is not None and key.expire_time is None
    assert key.standing(NOW + timedelta(days=100 * 365)) is KeyStanding.VALID


def test_a_time_to_live_expires_the_key_that_long_after_its_creation():
    account = registered()

    add_key(account, ttl=timedelta(hours=12))

    key = account.api_key_of("key-1")
    assert key is not None and key.expire_time == NOW + timedelta(hours=12)


@pytest.mark.parametrize(
    ("expiry", "field"),
    [
        ({"expire_time": NOW}, "expire_time"),
        ({"expire_time": NOW - timedelta(seconds=1)}, "expire_time"),
        ({"ttl": timedelta(0)}, "ttl"),
        ({"ttl": timedelta(seconds=-5)}, "ttl"),
        ({"ttl": timedelta(days=999_999_999)}, "ttl"),
        ({"expire_time": NOW + timedelta(days=1), "ttl": timedelta(days=1)}, "expire_time"),
    ],
    ids=["now", "past", "zero-ttl", "negative-ttl", "past-year-9999", "both"],
)
def test_a_key_that_could_never_work_is_refused_and_nothing_recorded(expiry, field):
    account = registered()

    with pytest.raises(ValidationError) as raised:
        add_key(account, **expiry)

    assert [v.field for v in raised.value.violations] == [field]
    assert account.collect_events() == []
    assert account.api_key_ids == []


@given(
    ttl=st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3650)),
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=7300)),
)
def test_a_key_opens_its_account_until_exactly_its_expire_time(ttl, later):
    account = registered()
    add_key(account, ttl=ttl)
    key = account.api_key_of("key-1")
    assert key is not None

    expected = KeyStanding.EXPIRED if later >= ttl else KeyStanding.VALID
    assert key.standing(NOW + later) is expected


def test_revoke_api_key_records_who_and_when_and_the_key_is_revoked():
    account = registered()
    add_key(account, "key-1")
    add_key(account, "key-2")
    account.collect_events()

    revoked = account.revoke_api_key("key-1", actor="key:key-2", now=NOW + timedelta(hours=1))

    events = account.collect_events()
    assert [type(e) for e in events] == [Account.ApiKeyRevoked]
    assert (events[0].key_id, events[0].actor) == ("key-1", "key:key-2")
    assert revoked.revoke_time == NOW + timedelta(hours=1)
    assert revoked.standing(NOW + timedelta(hours=1)) is KeyStanding.REVOKED
    other = account.api_key_of("key-2")
    assert other is not None and other.standing(NOW + timedelta(hours=1)) is KeyStanding.VALID


def test_a_revoked_key_is_revoked_even_before_it_would_expire_and_after():
    account = registered()
    add_key(account, ttl=timedelta(hours=1))

    revoked = account.revoke_api_key("key-1", actor=ACTOR, now=NOW)

    assert revoked.standing(NOW) is KeyStanding.REVOKED
    assert revoked.standing(NOW + timedelta(days=1)) is KeyStanding.REVOKED


def test_revoking_twice_records_once_and_answers_the_same():
    account = registered()
    add_key(account)
    first = account.revoke_api_key("key-1", actor=ACTOR, now=NOW)
    account.collect_events()

    again = account.revoke_api_key("key-1", actor="someone else", now=NOW + timedelta(days=1))

    assert account.collect_events() == []
    assert again == first


def test_revoking_a_key_the_account_lacks_is_refused():
    account = registered()
    add_key(account, "key-1")
    account.collect_events()

    with pytest.raises(UnknownApiKey):
        account.revoke_api_key("key-2", actor=ACTOR, now=NOW)

    assert account.collect_events() == []


def test_add_api_key_returns_the_index_at_the_id_derived_from_the_hash():
    account = registered(account_id="acct-7")

    api_key = account.add_api_key("key-1", "hash-1", prefix="aik_key-1", actor=ACTOR, now=NOW)

    assert isinstance(api_key, ApiKey)
    assert api_key.id == ApiKey.create_id("hash-1")
    assert api_key.account_id == "acct-7"
    assert api_key.key_id == "key-1"
    assert [type(e) for e in api_key.collect_events()] == [ApiKey.Created]


def test_api_key_prefix_is_the_scheme_and_the_key_id_only():
    key = "aik_0a1b2c3d_" + "s" * 43

    assert api_key_prefix(key) == "aik_0a1b2c3d"


def test_api_key_create_id_is_deterministic_per_hash():
    assert ApiKey.create_id("hash-1") == ApiKey.create_id("hash-1")
    assert ApiKey.create_id("hash-1") != ApiKey.create_id("hash-2")
    assert ApiKey.create_id("hash-1").version == 5


def test_account_create_id_is_deterministic_per_account_id():
    made = Account.create_id("acct-1")

    assert isinstance(made, UUID)
    assert made.version == 5
    assert made == Account.create_id("acct-1")
    assert made != Account.create_id("acct-2")
    assert register("acct-1").id == made


def test_ids_of_accounts_api_keys_and_imports_do_not_collide():
    ids = {Account.create_id("x"), ApiKey.create_id("x"), AutoImport.create_id("x", "x")}

    assert len(ids) == 3


# -- replay -------------------------------------------------------------------------------------


def test_replay_of_an_account_and_its_api_key_gives_an_equal_state():
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    account = register("acct-1", "pro", 1000)
    app.save(account)
    account.change_plan("business", 5000, actor=ACTOR)
    api_key = account.add_api_key(
        "key-1", "hash-1", prefix="aik_key-1", actor=ACTOR, now=NOW, ttl=timedelta(days=1)
    )
    app.save(account, api_key)
    account.revoke_api_key("key-1", actor=ACTOR, now=NOW + timedelta(hours=1))
    app.save(account)

    replayed = app.repository.get(Account.create_id("acct-1"))
    replayed_key = app.repository.get(ApiKey.create_id("hash-1"))
    first_version = app.repository.get(account.id, version=1)

    assert replayed == account
    assert (replayed.plan, replayed.contact_limit, replayed.api_key_ids, replayed.version) == (
        "business",
        5000,
        ["key-1"],
        4,
    )
    assert replayed.api_key_of("key-1") == account.api_key_of("key-1")
    assert replayed_key == api_key
    assert (replayed_key.account_id, replayed_key.key_id) == ("acct-1", "key-1")
    assert (first_version.plan, first_version.contact_limit, first_version.api_key_ids) == (
        "pro",
        1000,
        [],
    )


def test_a_snapshot_of_an_account_with_keys_loads_into_the_same_state():
    env = {"PERSISTENCE_MODULE": "eventsourcing.popo", "IS_SNAPSHOTTING_ENABLED": "y"}
    app = Application(env=env)
    account = register("acct-1")
    index = add_key(account, "key-1", ttl=timedelta(days=1))
    add_key(account, "key-2")
    account.revoke_api_key("key-2", actor=ACTOR, now=NOW)
    app.save(account, index)

    app.take_snapshot(account.id)
    loaded = app.repository.get(account.id)

    assert loaded == account
    assert loaded.list_api_keys() == account.list_api_keys()


@pytest.mark.parametrize("account_id", ["acct\n", "acct\r\n"])
def test_account_id_with_a_trailing_newline_is_refused(account_id):
    with pytest.raises(ValidationError) as raised:
        Account.register(account_id, "lite", 10, actor="admin")

    assert {v.field for v in raised.value.violations} == {"account_id"}


def test_plan_length_is_checked_after_stripping():
    account = Account.register("acct", "  " + "p" * MAX_PLAN_LENGTH, 10, actor="admin")

    assert account.plan == "p" * MAX_PLAN_LENGTH


def test_a_boolean_is_not_a_contact_limit():
    with pytest.raises(ValidationError):
        Account.register("acct", "lite", True, actor="admin")

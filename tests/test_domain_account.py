"""Unit tests of the Account aggregate and of the ApiKey index."""

from __future__ import annotations

from uuid import UUID

import pytest
from eventsourcing.application import Application

from domain.account import MAX_PLAN_LENGTH, Account, ApiKey
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


def test_add_api_key_records_the_key_id():
    account = registered()

    account.add_api_key("key-1", "hash-1", actor="bob")

    events = account.collect_events()
    assert [type(e) for e in events] == [Account.ApiKeyCreated]
    assert events[0].key_id == "key-1"
    assert events[0].actor == "bob"
    assert account.api_key_ids == ["key-1"]
    assert account.version == 2


def test_add_api_key_keeps_every_key_in_order():
    account = registered()

    account.add_api_key("key-1", "hash-1", actor=ACTOR)
    account.add_api_key("key-2", "hash-2", actor=ACTOR)

    assert account.api_key_ids == ["key-1", "key-2"]


def test_add_api_key_returns_the_index_at_the_id_derived_from_the_hash():
    account = registered(account_id="acct-7")

    api_key = account.add_api_key("key-1", "hash-1", actor=ACTOR)

    assert isinstance(api_key, ApiKey)
    assert api_key.id == ApiKey.create_id("hash-1")
    assert api_key.account_id == "acct-7"
    assert api_key.key_id == "key-1"
    assert [type(e) for e in api_key.collect_events()] == [ApiKey.Created]


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
    api_key = account.add_api_key("key-1", "hash-1", actor=ACTOR)
    app.save(account, api_key)

    replayed = app.repository.get(Account.create_id("acct-1"))
    replayed_key = app.repository.get(ApiKey.create_id("hash-1"))
    first_version = app.repository.get(account.id, version=1)

    assert replayed == account
    assert (replayed.plan, replayed.contact_limit, replayed.api_key_ids, replayed.version) == (
        "business",
        5000,
        ["key-1"],
        3,
    )
    assert replayed_key == api_key
    assert (replayed_key.account_id, replayed_key.key_id) == ("acct-1", "key-1")
    assert (first_version.plan, first_version.contact_limit, first_version.api_key_ids) == (
        "pro",
        1000,
        [],
    )


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

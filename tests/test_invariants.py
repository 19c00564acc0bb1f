"""The checker of tests/invariants.py finds each kind of broken promise (else the fault and load
runs that rely on it would prove nothing)."""

from __future__ import annotations

from autoimport.v1 import accounts_pb2 as apb
from autoimport.v1 import contacts_pb2 as cpb
from autoimport.v1 import contacts_pb2_grpc
from domain.external_account import ExternalAccount
from service.config import Settings
from service.stores import open_application
from tests.invariants import Expected, broken_promises
from tests.support import Client, ServerProcess
from tests.test_api_csv import upload

EMAILS = {"a@example.com", "b@example.com", "c@example.com"}


def test_a_store_that_keeps_its_promises_passes(server: ServerProcess, admin: Client, account: str):
    upload(admin, account, [("email\n" + "\n".join(sorted(EMAILS)) + "\n").encode()])
    contacts_pb2_grpc.ContactServiceStub(admin.channel).UnsubscribeContact(
        cpb.UnsubscribeContactRequest(account_id=account, email="a@example.com")
    )
    settings = Settings.from_env(server.env)

    kept = broken_promises(settings, admin, [Expected(account, EMAILS, {"a@example.com"})])
    lost = broken_promises(settings, admin, [Expected(account, EMAILS | {"lost@example.com"})])
    active = broken_promises(settings, admin, [Expected(account, EMAILS, {"b@example.com"})])

    assert kept == []
    assert lost == [f"{account}: 1 contacts lost, e.g. lost@example.com"]
    assert active == [f"{account}: unsubscribed contacts active again: ['b@example.com']"]


def test_an_account_over_its_limit_and_a_budget_overspent_are_found(
    server: ServerProcess, admin: Client, account: str
):
    upload(admin, account, [("email\n" + "\n".join(sorted(EMAILS)) + "\n").encode()])
    admin.accounts.UpsertAccount(
        apb.UpsertAccountRequest(account=apb.Account(account_id=account, plan="p", contact_limit=2))
    )
    settings = Settings.from_env(server.env)
    app = open_application(settings)
    budget = ExternalAccount(account_id=account, service="shopify", external_account="shop")
    budget.trigger_event(ExternalAccount.BudgetUsed, window=7, count=501)
    app.save(budget)
    app.close()

    broken = broken_promises(settings, admin, [Expected(account)])

    assert broken == [
        f"{account}: 3 contacts, over its limit of 2",
        f"external account {budget.id} charged 501 contacts in window 7",
    ]

"""Unit tests of the AutoImport aggregate: creation, validation, editing, lifecycle and replay."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import Application

from connectors import SOURCES
from connectors.google_contacts import GoogleContactsCriteria
from connectors.hubspot import LIFECYCLE_STAGES as HUBSPOT_LIFECYCLE_STAGES
from connectors.hubspot import HubSpotCriteria
from connectors.shopify import ShopifyCriteria
from domain.auto_import import AutoImport, ImportState
from domain.errors import (
    ImportAlreadyPaused,
    ImportIsDeleted,
    ImportNeedsReauth,
    ImportNotPaused,
    InvalidTransition,
    ValidationError,
)
from domain.import_settings import (
    MAX_DISPLAY_NAME,
    MAX_LABELS,
    Credentials,
    ImportChanges,
    NewImport,
)
from domain.sources import Criteria

ACCOUNT = "acct-1"
ACTOR = "alice@example.com"
ACCESS = "ya29.access-token-SECRET-1"
REFRESH = "1//refresh-token-SECRET-2"

GOOGLE_CREDENTIALS = Credentials(access_token=ACCESS, refresh_token=REFRESH)
SHOPIFY_CREDENTIALS = Credentials(access_token="shpat_SECRET_3")
HUBSPOT_CREDENTIALS = Credentials(access_token="pat-na1-SECRET-4")

VALID_ACCOUNTS = {
    "google_contacts": "bob@example.com",
    "shopify": "my-store",
    "hubspot": "12345678",
}
VALID_CREDENTIALS = {
    "google_contacts": GOOGLE_CREDENTIALS,
    "shopify": SHOPIFY_CREDENTIALS,
    "hubspot": HUBSPOT_CREDENTIALS,
}


def new_import(service: str = "google_contacts", **overrides: Any) -> NewImport:
    """A valid request for `service`, with some fields replaced."""
    values: dict[str, Any] = {
        "service": service,
        "external_account": VALID_ACCOUNTS.get(service, "bob@example.com"),
        "credentials": VALID_CREDENTIALS.get(service, GOOGLE_CREDENTIALS),
    }
    values.update(overrides)
    return NewImport(**values)


def start(new: NewImport | None = None, **kwargs: Any) -> AutoImport:
    kwargs.setdefault("actor", ACTOR)
    return AutoImport.start(
        kwargs.pop("account_id", ACCOUNT), new or new_import(), SOURCES, **kwargs
    )


def update(agg: AutoImport, changes: ImportChanges, *, actor: str) -> None:
    agg.update(changes, SOURCES[agg.service], actor=actor)


def started(service: str = "google_contacts", **overrides: Any) -> AutoImport:
    """A new import whose Created event was already collected, so only later events remain."""
    agg = start(new_import(service, **overrides))
    agg.collect_events()
    return agg


def fields_of(error: ValidationError) -> list[str]:
    return [v.field for v in error.violations]


def refused_fields(new: NewImport) -> list[str]:
    with pytest.raises(ValidationError) as excinfo:
        start(new)
    return fields_of(excinfo.value)


def public_state(agg: AutoImport) -> dict[str, Any]:
    return {
        "id": agg.id,
        "version": agg.version,
        "created_on": agg.created_on,
        "modified_on": agg.modified_on,
        "account_id": agg.account_id,
        "service": agg.service,
        "external_account": agg.external_account,
        "display_name": agg.display_name,
        "credentials": agg.credentials,
        "criteria": agg.criteria,
        "list_ids": list(agg.list_ids),
        "tags": list(agg.tags),
        "state": agg.state,
        "state_reason": agg.state_reason,
        "is_deleted": agg.is_deleted,
    }


def popo_application() -> Application:
    # Explicitly in memory, whatever PERSISTENCE_MODULE the environment sets for other tests.
    return Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


# -- start: what a new import records -------------------------------------------------------


def test_start_records_a_created_event_carrying_every_field_and_the_actor():
    new = NewImport(
        service="shopify",
        external_account="My-Store.myshopify.com",
        credentials=SHOPIFY_CREDENTIALS,
        criteria=ShopifyCriteria(subscribed_only=True, customer_tag="vip"),
        display_name="Shop customers",
        list_ids=["list-1", "list_2"],
        tags=["shopify", "vip"],
    )

    agg = start(new, request_id="req-1", actor="bob")

    events = agg.collect_events()
    assert len(events) == 1
    created = events[0]
    assert isinstance(created, AutoImport.Created)
    assert created.originator_id == agg.id
    assert created.originator_version == 1
    assert created.account_id == ACCOUNT
    assert created.request_id == "req-1"
    assert created.service == "shopify"
    assert created.external_account == "my-store"
    assert created.display_name == "Shop customers"
    assert created.credentials == {
        "access_token": "shpat_SECRET_3",
        "refresh_token": "",
        "expires_at": "",
    }
    assert created.criteria == {"subscribed_only": True, "customer_tag": "vip"}
    assert created.list_ids == ["list-1", "list_2"]
    assert created.tags == ["shopify", "vip"]
    assert created.actor == "bob"


def test_start_gives_an_active_import_holding_the_requested_configuration():
    agg = start(
        new_import(
            "hubspot",
            criteria=HubSpotCriteria(lifecycle_stage="customer"),
            display_name="CRM",
            list_ids=["l1"],
            tags=["t1"],
        )
    )

    assert agg.version == 1
    assert agg.account_id == ACCOUNT
    assert agg.service == "hubspot"
    assert agg.external_account == "12345678"
    assert agg.display_name == "CRM"
    assert agg.credentials == HUBSPOT_CREDENTIALS
    assert agg.criteria == HubSpotCriteria(lifecycle_stage="customer").to_dict()
    assert agg.list_ids == ["l1"]
    assert agg.tags == ["t1"]
    assert agg.state is ImportState.ACTIVE
    assert agg.state_reason == ""
    assert agg.is_deleted is False


@pytest.mark.parametrize(
    ("service", "given", "normalized"),
    [
        ("google_contacts", "Bob.Smith@Example.COM", "bob.smith@example.com"),
        ("google_contacts", "  bob@example.com  ", "bob@example.com"),
        ("shopify", "My-Store.myshopify.com", "my-store"),
        ("shopify", "https://my-store.myshopify.com", "my-store"),
        ("shopify", "https://My-Store.myshopify.com/", "my-store"),
        ("shopify", "my-store", "my-store"),
        ("shopify", " MY-STORE ", "my-store"),
        ("hubspot", "12345678", "12345678"),
        ("hubspot", " 987 ", "987"),
    ],
)
def test_external_account_is_normalized_per_service(service, given, normalized):
    agg = start(new_import(service, external_account=given))

    assert agg.external_account == normalized
    assert agg.collect_events()[0].external_account == normalized


@pytest.mark.parametrize(
    ("service", "given"),
    [
        ("google_contacts", ""),
        ("google_contacts", "bob"),
        ("google_contacts", "bob@"),
        ("google_contacts", "@example.com"),
        ("google_contacts", "bob smith@example.com"),
        ("shopify", ""),
        ("shopify", "my store"),
        ("shopify", "-my-store"),
        ("shopify", "my_store"),
        ("shopify", "http://my-store.myshopify.com"),
        ("shopify", "my-store.example.com"),
        ("shopify", "s" * 61),
        ("hubspot", ""),
        ("hubspot", "12ab"),
        ("hubspot", "0123"),
        ("hubspot", "-123"),
        ("hubspot", "portal-1"),
        ("hubspot", "1" * 13),
    ],
)
def test_invalid_external_account_is_refused(service, given):
    assert refused_fields(new_import(service, external_account=given)) == ["external_account"]


@pytest.mark.parametrize("service", ["", "gmail", "Shopify", "google-contacts", " hubspot"])
def test_unknown_service_is_refused(service):
    assert refused_fields(new_import(service)) == ["service"]


@pytest.mark.parametrize("service", ["google_contacts", "shopify", "hubspot"])
@pytest.mark.parametrize("access_token", ["", "   "])
def test_missing_access_token_is_refused(service, access_token):
    credentials = Credentials(access_token=access_token, refresh_token=REFRESH)

    assert refused_fields(new_import(service, credentials=credentials)) == [
        "credentials.access_token"
    ]


@pytest.mark.parametrize("refresh_token", ["", "   "])
def test_missing_refresh_token_is_refused_for_google_contacts(refresh_token):
    credentials = Credentials(access_token=ACCESS, refresh_token=refresh_token)

    assert refused_fields(new_import("google_contacts", credentials=credentials)) == [
        "credentials.refresh_token"
    ]


@pytest.mark.parametrize("service", ["shopify", "hubspot"])
def test_missing_refresh_token_is_accepted_for_other_services(service):
    agg = start(new_import(service, credentials=Credentials(access_token="token")))

    assert agg.credentials == Credentials(access_token="token", refresh_token="")


@pytest.mark.parametrize(
    ("service", "criteria", "field"),
    [
        ("google_contacts", ShopifyCriteria(), "criteria.shopify"),
        ("google_contacts", HubSpotCriteria(), "criteria.hubspot"),
        ("shopify", GoogleContactsCriteria(), "criteria.google_contacts"),
        ("shopify", HubSpotCriteria(lifecycle_stage="lead"), "criteria.hubspot"),
        ("hubspot", GoogleContactsCriteria(), "criteria.google_contacts"),
        ("hubspot", ShopifyCriteria(subscribed_only=True), "criteria.shopify"),
    ],
)
def test_criteria_of_another_service_are_refused(service, criteria, field):
    assert refused_fields(new_import(service, criteria=criteria)) == [field]


@pytest.mark.parametrize(
    "contact_group",
    [
        "myContacts",
        "contactGroups/",
        "contactGroups/my contacts",
        "contactGroups/a/b",
        "contactgroups/myContacts",
        "contactGroups/" + "a" * 129,
    ],
)
def test_invalid_contact_group_is_refused(contact_group):
    criteria = GoogleContactsCriteria(contact_group=contact_group)

    assert refused_fields(new_import("google_contacts", criteria=criteria)) == [
        "criteria.google_contacts.contact_group"
    ]


@pytest.mark.parametrize(
    "contact_group",
    ["", "contactGroups/myContacts", "contactGroups/a1_B2-c3", "contactGroups/" + "a" * 128],
)
def test_valid_contact_group_is_accepted(contact_group):
    agg = start(new_import(criteria=GoogleContactsCriteria(contact_group=contact_group)))

    assert agg.criteria == GoogleContactsCriteria(contact_group=contact_group).to_dict()


@pytest.mark.parametrize("customer_tag", ["vip,wholesale", ",", " vip", "vip ", "t" * 256])
def test_shopify_customer_tag_that_is_not_one_tag_is_refused(customer_tag):
    criteria = ShopifyCriteria(customer_tag=customer_tag)

    assert refused_fields(new_import("shopify", criteria=criteria)) == [
        "criteria.shopify.customer_tag"
    ]


@pytest.mark.parametrize("customer_tag", ["", "vip", "VIP customers", "t" * 255])
def test_shopify_single_customer_tag_is_accepted(customer_tag):
    agg = start(new_import("shopify", criteria=ShopifyCriteria(customer_tag=customer_tag)))

    assert agg.criteria == ShopifyCriteria(customer_tag=customer_tag).to_dict()


@pytest.mark.parametrize("stage", ["Lead", "prospect", "12a", "-1", "1.5", " lead"])
def test_hubspot_unknown_lifecycle_stage_is_refused(stage):
    criteria = HubSpotCriteria(lifecycle_stage=stage)

    assert refused_fields(new_import("hubspot", criteria=criteria)) == [
        "criteria.hubspot.lifecycle_stage"
    ]


@pytest.mark.parametrize("stage", ["", *HUBSPOT_LIFECYCLE_STAGES, "1", "123456789"])
def test_hubspot_default_or_numeric_custom_lifecycle_stage_is_accepted(stage):
    agg = start(new_import("hubspot", criteria=HubSpotCriteria(lifecycle_stage=stage)))

    assert agg.criteria == HubSpotCriteria(lifecycle_stage=stage).to_dict()


@pytest.mark.parametrize(
    ("list_ids", "fields"),
    [
        (["ok", "not ok"], ["list_ids[1]"]),
        (["a/b", "ok", "a.b"], ["list_ids[0]", "list_ids[2]"]),
        ([""], ["list_ids[0]"]),
        (["ok", "   "], ["list_ids[1]"]),
        (["l" * 65], ["list_ids[0]"]),
    ],
)
def test_invalid_list_id_is_refused_with_its_index(list_ids, fields):
    assert refused_fields(new_import(list_ids=list_ids)) == fields


def test_more_list_ids_than_the_maximum_are_refused():
    too_many = [f"list-{i}" for i in range(MAX_LABELS + 1)]

    assert refused_fields(new_import(list_ids=too_many)) == ["list_ids"]


def test_the_maximum_number_of_list_ids_and_the_longest_list_id_are_accepted():
    ids = [f"list-{i}" for i in range(MAX_LABELS - 1)] + ["l" * 64]

    assert start(new_import(list_ids=ids)).list_ids == ids


@pytest.mark.parametrize(
    ("tags", "fields"),
    [
        (["ok", "t" * 256], ["tags[1]"]),
        ([""], ["tags[0]"]),
        (["   ", "ok"], ["tags[0]"]),
    ],
)
def test_tag_that_is_empty_or_too_long_is_refused_with_its_index(tags, fields):
    assert refused_fields(new_import(tags=tags)) == fields


def test_more_tags_than_the_maximum_are_refused():
    assert refused_fields(new_import(tags=[f"t{i}" for i in range(MAX_LABELS + 1)])) == ["tags"]


def test_tag_of_255_characters_is_accepted():
    assert start(new_import(tags=["t" * 255])).tags == ["t" * 255]


def test_display_name_longer_than_the_maximum_is_refused():
    assert refused_fields(new_import(display_name="n" * (MAX_DISPLAY_NAME + 1))) == ["display_name"]


def test_display_name_is_stripped_before_its_length_is_checked():
    agg = start(new_import(display_name="  " + "n" * MAX_DISPLAY_NAME + "  "))

    assert agg.display_name == "n" * MAX_DISPLAY_NAME


def test_every_violation_of_a_new_import_is_reported_at_once():
    new = NewImport(
        service="google_contacts",
        external_account="not-an-email",
        credentials=Credentials(access_token="", refresh_token=""),
        criteria=GoogleContactsCriteria(contact_group="friends"),
        display_name="n" * (MAX_DISPLAY_NAME + 1),
        list_ids=["ok", "bad id"],
        tags=["t" * 256],
    )

    with pytest.raises(ValidationError) as excinfo:
        start(new)

    expected = {
        "external_account",
        "credentials.access_token",
        "credentials.refresh_token",
        "criteria.google_contacts.contact_group",
        "display_name",
        "list_ids[1]",
        "tags[0]",
    }
    assert set(fields_of(excinfo.value)) == expected
    assert len(excinfo.value.violations) == len(expected)
    for field in expected:
        assert f"{field}: " in str(excinfo.value)


def test_unknown_service_is_reported_with_the_violations_of_the_other_fields():
    new = new_import(
        "gmail", display_name="n" * (MAX_DISPLAY_NAME + 1), list_ids=["a b"], tags=[""]
    )

    assert set(refused_fields(new)) == {"service", "display_name", "list_ids[0]", "tags[0]"}


def test_a_refused_import_calls_no_default_display_name():
    def default_display_name(service: str, external_account: str) -> str:
        raise AssertionError("called for an invalid import")

    with pytest.raises(ValidationError):
        start(new_import(external_account="bad"), default_display_name=default_display_name)


@pytest.mark.parametrize(
    ("service", "criteria", "stored"),
    [
        ("google_contacts", GoogleContactsCriteria(), {"contact_group": ""}),
        ("shopify", ShopifyCriteria(), {"subscribed_only": False, "customer_tag": ""}),
        ("hubspot", HubSpotCriteria(), {"lifecycle_stage": ""}),
    ],
)
def test_default_criteria_select_every_contact_when_none_are_given(service, criteria, stored):
    agg = start(new_import(service, criteria=None))

    assert SOURCES[service].criteria_of(agg.criteria) == criteria
    assert agg.criteria == stored
    assert agg.collect_events()[0].criteria == stored


def test_default_display_name_comes_from_the_callback_with_the_normalized_account():
    calls: list[tuple[str, str]] = []

    def default_display_name(service: str, external_account: str) -> str:
        calls.append((service, external_account))
        return f"Shopify {external_account}"

    agg = start(
        new_import("shopify", external_account="My-Store.myshopify.com", display_name="  "),
        default_display_name=default_display_name,
    )

    assert calls == [("shopify", "my-store")]
    assert agg.display_name == "Shopify my-store"
    assert agg.collect_events()[0].display_name == "Shopify my-store"


def test_given_display_name_is_kept_and_the_callback_is_not_called():
    def default_display_name(service: str, external_account: str) -> str:
        raise AssertionError("called although a display name was given")

    agg = start(new_import(display_name="  My import  "), default_display_name=default_display_name)

    assert agg.display_name == "My import"


def test_display_name_stays_empty_without_a_callback():
    assert start(new_import(display_name="")).display_name == ""


def test_list_ids_and_tags_are_stripped_and_de_duplicated_in_order():
    agg = start(
        new_import(
            list_ids=[" b ", "a", "b", "a ", "c", "b"],
            tags=["  VIP", "new", "VIP  ", "new", "returning"],
        )
    )

    assert agg.list_ids == ["b", "a", "c"]
    assert agg.tags == ["VIP", "new", "returning"]
    created = agg.collect_events()[0]
    assert created.list_ids == ["b", "a", "c"]
    assert created.tags == ["VIP", "new", "returning"]


# -- ids --------------------------------------------------------------------------------------


def test_same_request_id_for_the_same_account_gives_the_same_id():
    first = start(request_id="req-1")
    second = start(new_import("shopify"), request_id="req-1")

    assert first.id == second.id == AutoImport.create_id(ACCOUNT, "req-1")


def test_same_request_id_for_different_accounts_gives_different_ids():
    assert (
        start(account_id="acct-1", request_id="req-1").id
        != start(account_id="acct-2", request_id="req-1").id
    )


def test_different_request_ids_give_different_ids():
    assert start(request_id="req-1").id != start(request_id="req-2").id


def test_no_request_id_gives_a_new_id_each_time():
    assert start(request_id="").id != start(request_id="").id
    assert AutoImport.create_id(ACCOUNT, "") != AutoImport.create_id(ACCOUNT, "")


def test_create_id_is_a_name_based_uuid_of_the_account_and_request_id():
    made = AutoImport.create_id(ACCOUNT, "req-1")

    assert isinstance(made, UUID)
    assert made.version == 5
    assert made == AutoImport.create_id(ACCOUNT, "req-1")
    assert AutoImport.create_id(ACCOUNT, "").version == 4


# -- credentials stay out of logs --------------------------------------------------------------


@pytest.mark.parametrize("render", [repr, str, "{}".format, "{!r}".format])
def test_credentials_never_appear_in_the_text_of_credentials(render):
    text = render(Credentials(access_token=ACCESS, refresh_token=REFRESH))

    assert ACCESS not in text
    assert REFRESH not in text
    assert "SECRET" not in text


@pytest.mark.parametrize("render", [repr, str, "{}".format, "{!r}".format])
def test_credentials_never_appear_in_the_text_of_the_aggregate_credentials_property(render):
    agg = start(new_import("google_contacts"))

    text = render(agg.credentials)

    assert ACCESS not in text
    assert REFRESH not in text
    # ...although the property does hold them.
    assert agg.credentials.access_token == ACCESS
    assert agg.credentials.refresh_token == REFRESH


def test_credentials_to_dict_holds_both_tokens_and_the_expiry():
    credentials = Credentials(access_token="a", refresh_token="r", expires_at="2026-01-01T00:00Z")
    assert credentials.to_dict() == {
        "access_token": "a",
        "refresh_token": "r",
        "expires_at": "2026-01-01T00:00Z",
    }
    assert Credentials(**credentials.to_dict()) == credentials


def test_credentials_of_a_history_from_before_expiries_load():
    assert Credentials(**{"access_token": "a", "refresh_token": "r"}).expires_at == ""


# -- update -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "stored", "attribute", "value"),
    [
        (
            ImportChanges(display_name="  Renamed  "),
            {"display_name": "Renamed"},
            "display_name",
            "Renamed",
        ),
        (
            ImportChanges(criteria=GoogleContactsCriteria(contact_group="contactGroups/friends")),
            {"criteria": {"contact_group": "contactGroups/friends"}},
            "criteria",
            {"contact_group": "contactGroups/friends"},
        ),
        (
            ImportChanges(list_ids=["x", " y ", "x"]),
            {"list_ids": ["x", "y"]},
            "list_ids",
            ["x", "y"],
        ),
        (ImportChanges(list_ids=[]), {"list_ids": []}, "list_ids", []),
        (ImportChanges(tags=["new", "new "]), {"tags": ["new"]}, "tags", ["new"]),
        (ImportChanges(tags=[]), {"tags": []}, "tags", []),
    ],
    ids=["display_name", "criteria", "list_ids", "list_ids-emptied", "tags", "tags-emptied"],
)
def test_update_of_one_field_emits_one_updated_event_with_only_that_key(
    changes, stored, attribute, value
):
    agg = started(display_name="Original", list_ids=["l1"], tags=["t1"])

    update(agg, changes, actor="bob")

    events = agg.collect_events()
    assert [type(e) for e in events] == [AutoImport.Updated]
    assert events[0].changes == stored
    assert events[0].actor == "bob"
    assert getattr(agg, attribute) == value
    assert agg.version == 2


def test_update_of_several_fields_emits_one_event_with_only_the_changed_keys():
    agg = started(display_name="Original", list_ids=["l1"], tags=["t1"])

    update(
        agg,
        ImportChanges(display_name="Renamed", list_ids=[" l1 "], tags=["t2", "t1"]),
        actor=ACTOR,
    )

    events = agg.collect_events()
    assert [type(e) for e in events] == [AutoImport.Updated]
    assert events[0].changes == {"display_name": "Renamed", "tags": ["t2", "t1"]}
    assert (agg.display_name, agg.list_ids, agg.tags) == ("Renamed", ["l1"], ["t2", "t1"])


@pytest.mark.parametrize(
    "changes",
    [
        ImportChanges(),
        ImportChanges(display_name="Original"),
        ImportChanges(display_name=" Original "),
        ImportChanges(criteria=GoogleContactsCriteria(contact_group="contactGroups/family")),
        ImportChanges(list_ids=["l1", "l2"]),
        ImportChanges(list_ids=[" l1", "l2 ", "l1"]),
        ImportChanges(tags=["t1"]),
        ImportChanges(credentials=GOOGLE_CREDENTIALS),
        ImportChanges(
            display_name="Original",
            criteria=GoogleContactsCriteria(contact_group="contactGroups/family"),
            list_ids=["l1", "l2"],
            tags=["t1"],
            credentials=Credentials(access_token=ACCESS, refresh_token=REFRESH),
        ),
    ],
    ids=[
        "nothing",
        "same-display-name",
        "same-display-name-with-spaces",
        "same-criteria",
        "same-list-ids",
        "same-list-ids-after-normalizing",
        "same-tags",
        "same-credentials",
        "everything-the-same",
    ],
)
def test_update_without_any_change_emits_no_event(changes):
    agg = started(
        display_name="Original",
        criteria=GoogleContactsCriteria(contact_group="contactGroups/family"),
        list_ids=["l1", "l2"],
        tags=["t1"],
    )
    before = public_state(agg)

    update(agg, changes, actor=ACTOR)

    assert agg.collect_events() == []
    assert public_state(agg) == before


def test_update_of_credentials_emits_credentials_rotated_and_not_updated():
    agg = started()
    rotated = Credentials(access_token="new-access", refresh_token="new-refresh")

    update(agg, ImportChanges(credentials=rotated), actor="bob")

    events = agg.collect_events()
    assert [type(e) for e in events] == [AutoImport.CredentialsRotated]
    assert events[0].credentials == {
        "access_token": "new-access",
        "refresh_token": "new-refresh",
        "expires_at": "",
    }
    assert events[0].actor == "bob"
    assert agg.credentials == rotated
    assert agg.version == 2


def test_update_of_only_the_refresh_token_rotates_the_credentials():
    agg = started()
    rotated = Credentials(access_token=ACCESS, refresh_token="new-refresh")

    update(agg, ImportChanges(credentials=rotated), actor=ACTOR)

    assert [type(e) for e in agg.collect_events()] == [AutoImport.CredentialsRotated]
    assert agg.credentials == rotated


def test_update_of_credentials_and_another_field_emits_updated_then_credentials_rotated():
    agg = started()

    update(
        agg,
        ImportChanges(display_name="Renamed", credentials=Credentials("new-access", "new-refresh")),
        actor=ACTOR,
    )

    events = agg.collect_events()
    assert [type(e) for e in events] == [AutoImport.Updated, AutoImport.CredentialsRotated]
    assert events[0].changes == {"display_name": "Renamed"}
    assert agg.version == 3


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        (Credentials(access_token="", refresh_token="r"), "credentials.access_token"),
        (Credentials(access_token="a", refresh_token=" "), "credentials.refresh_token"),
    ],
)
def test_update_with_incomplete_google_credentials_is_refused(credentials, field):
    agg = started()

    with pytest.raises(ValidationError) as excinfo:
        update(agg, ImportChanges(credentials=credentials), actor=ACTOR)

    assert fields_of(excinfo.value) == [field]
    assert agg.collect_events() == []
    assert agg.credentials == GOOGLE_CREDENTIALS


def test_update_of_shopify_credentials_needs_no_refresh_token():
    agg = started("shopify")

    update(agg, ImportChanges(credentials=Credentials(access_token="shpat_new")), actor=ACTOR)

    assert [type(e) for e in agg.collect_events()] == [AutoImport.CredentialsRotated]
    assert agg.credentials == Credentials(access_token="shpat_new")


def test_reset_criteria_goes_back_to_the_default_criteria():
    agg = started("shopify", criteria=ShopifyCriteria(subscribed_only=True, customer_tag="vip"))

    update(agg, ImportChanges(reset_criteria=True), actor=ACTOR)

    events = agg.collect_events()
    assert [type(e) for e in events] == [AutoImport.Updated]
    assert events[0].changes == {"criteria": {"subscribed_only": False, "customer_tag": ""}}
    assert agg.criteria == ShopifyCriteria().to_dict()


def test_reset_criteria_of_default_criteria_emits_no_event():
    agg = started("hubspot")

    update(agg, ImportChanges(reset_criteria=True), actor=ACTOR)

    assert agg.collect_events() == []


def test_given_criteria_take_precedence_over_reset_criteria():
    agg = started("hubspot", criteria=HubSpotCriteria(lifecycle_stage="lead"))

    update(
        agg,
        ImportChanges(criteria=HubSpotCriteria(lifecycle_stage="customer"), reset_criteria=True),
        actor=ACTOR,
    )

    assert agg.criteria == HubSpotCriteria(lifecycle_stage="customer").to_dict()


@pytest.mark.parametrize(
    ("service", "criteria", "field"),
    [
        ("google_contacts", ShopifyCriteria(), "criteria.shopify"),
        ("shopify", HubSpotCriteria(), "criteria.hubspot"),
        ("hubspot", GoogleContactsCriteria(), "criteria.google_contacts"),
    ],
)
def test_update_with_criteria_of_another_service_is_refused(service, criteria, field):
    agg = started(service)
    before = agg.criteria

    with pytest.raises(ValidationError) as excinfo:
        update(agg, ImportChanges(criteria=criteria), actor=ACTOR)

    assert fields_of(excinfo.value) == [field]
    assert agg.collect_events() == []
    assert agg.criteria == before


def test_update_reports_every_violation_at_once_and_changes_nothing():
    agg = started(display_name="Original")
    before = public_state(agg)

    with pytest.raises(ValidationError) as excinfo:
        update(
            agg,
            ImportChanges(
                display_name="n" * (MAX_DISPLAY_NAME + 1),
                criteria=GoogleContactsCriteria(contact_group="friends"),
                list_ids=["ok", "not ok"],
                tags=[""],
                credentials=Credentials(access_token="", refresh_token=""),
            ),
            actor=ACTOR,
        )

    assert set(fields_of(excinfo.value)) == {
        "display_name",
        "criteria.google_contacts.contact_group",
        "list_ids[1]",
        "tags[0]",
        "credentials.access_token",
        "credentials.refresh_token",
    }
    assert agg.collect_events() == []
    assert public_state(agg) == before


@pytest.mark.parametrize(
    "changes",
    [
        ImportChanges(),
        ImportChanges(display_name="Renamed"),
        ImportChanges(credentials=Credentials("new-access", "new-refresh")),
        ImportChanges(reset_criteria=True),
    ],
    ids=["nothing", "display_name", "credentials", "reset_criteria"],
)
def test_update_after_delete_is_refused(changes):
    agg = started()
    agg.delete(actor=ACTOR)
    agg.collect_events()

    with pytest.raises(ImportIsDeleted):
        update(agg, changes, actor=ACTOR)

    assert agg.collect_events() == []
    assert agg.state is ImportState.DELETED


def test_credentials_rotation_makes_an_import_that_needs_reauth_active():
    agg = started()
    agg.state = ImportState.NEEDS_REAUTH
    agg.state_reason = "the refresh token was revoked"

    update(agg, ImportChanges(credentials=Credentials("new-access", "new-refresh")), actor=ACTOR)

    assert [type(e) for e in agg.collect_events()] == [AutoImport.CredentialsRotated]
    assert agg.state is ImportState.ACTIVE
    assert agg.state_reason == ""


def test_unchanged_credentials_leave_an_import_that_needs_reauth_in_that_state():
    agg = started()
    agg.state = ImportState.NEEDS_REAUTH

    update(agg, ImportChanges(credentials=GOOGLE_CREDENTIALS), actor=ACTOR)

    assert agg.collect_events() == []
    assert agg.state is ImportState.NEEDS_REAUTH


def test_update_of_other_fields_leaves_an_import_that_needs_reauth_in_that_state():
    agg = started()
    agg.state = ImportState.NEEDS_REAUTH

    update(agg, ImportChanges(display_name="Renamed"), actor=ACTOR)

    assert [type(e) for e in agg.collect_events()] == [AutoImport.Updated]
    assert agg.state is ImportState.NEEDS_REAUTH


def test_credentials_rotation_keeps_a_paused_import_paused():
    agg = started()
    agg.pause(actor=ACTOR)

    update(agg, ImportChanges(credentials=Credentials("new-access", "new-refresh")), actor=ACTOR)

    assert agg.state is ImportState.PAUSED


# -- pause, resume, delete --------------------------------------------------------------------


def test_pause_of_an_active_import_makes_it_paused():
    agg = started()

    agg.pause(actor="bob")

    events = agg.collect_events()
    assert [type(e) for e in events] == [AutoImport.Paused]
    assert events[0].actor == "bob"
    assert agg.state is ImportState.PAUSED
    assert agg.version == 2


def test_resume_of_a_paused_import_makes_it_active():
    agg = started()
    agg.pause(actor=ACTOR)
    agg.collect_events()

    agg.resume(actor="bob")

    events = agg.collect_events()
    assert [type(e) for e in events] == [AutoImport.Resumed]
    assert events[0].actor == "bob"
    assert agg.state is ImportState.ACTIVE
    assert agg.version == 3


def test_pause_of_a_paused_import_is_refused():
    agg = started()
    agg.pause(actor=ACTOR)
    agg.collect_events()

    with pytest.raises(ImportAlreadyPaused):
        agg.pause(actor=ACTOR)

    assert agg.collect_events() == []
    assert agg.state is ImportState.PAUSED


def test_resume_of_an_active_import_is_refused():
    agg = started()

    with pytest.raises(ImportNotPaused):
        agg.resume(actor=ACTOR)

    assert agg.collect_events() == []
    assert agg.state is ImportState.ACTIVE


def test_resume_of_an_import_that_needs_reauth_is_refused():
    agg = started()
    agg.state = ImportState.NEEDS_REAUTH

    with pytest.raises(ImportNeedsReauth):
        agg.resume(actor=ACTOR)

    assert agg.collect_events() == []
    assert agg.state is ImportState.NEEDS_REAUTH


@pytest.mark.parametrize("paused", [False, True], ids=["active", "paused"])
def test_delete_makes_the_import_deleted(paused):
    agg = started()
    if paused:
        agg.pause(actor=ACTOR)
    agg.collect_events()

    agg.delete(actor="bob")

    events = agg.collect_events()
    assert [type(e) for e in events] == [AutoImport.Deleted]
    assert events[0].actor == "bob"
    assert agg.state is ImportState.DELETED
    assert agg.is_deleted is True


def test_delete_of_an_import_that_needs_reauth_makes_it_deleted():
    agg = started()
    agg.state = ImportState.NEEDS_REAUTH
    agg.state_reason = "revoked"

    agg.delete(actor=ACTOR)

    assert agg.state is ImportState.DELETED
    assert agg.state_reason == ""


@pytest.mark.parametrize("command", ["pause", "resume", "delete"])
def test_pause_resume_and_delete_after_delete_are_refused(command):
    agg = started()
    agg.delete(actor=ACTOR)
    agg.collect_events()

    with pytest.raises(ImportIsDeleted):
        getattr(agg, command)(actor=ACTOR)

    assert agg.collect_events() == []
    assert agg.state is ImportState.DELETED


def test_delete_twice_is_refused():
    agg = started()
    agg.delete(actor=ACTOR)

    with pytest.raises(ImportIsDeleted):
        agg.delete(actor=ACTOR)

    assert [type(e) for e in agg.collect_events()] == [AutoImport.Deleted]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ImportIsDeleted, "IMPORT_DELETED"),
        (ImportNotPaused, "IMPORT_NOT_PAUSED"),
        (ImportAlreadyPaused, "IMPORT_ALREADY_PAUSED"),
        (ImportNeedsReauth, "IMPORT_NEEDS_REAUTH"),
    ],
)
def test_refused_transitions_are_invalid_transitions_with_their_reason(error, reason):
    assert issubclass(error, InvalidTransition)
    assert error.reason == reason


# -- replay -------------------------------------------------------------------------------------


def test_replay_of_a_new_import_gives_an_equal_state():
    app = popo_application()
    agg = start(
        new_import(
            "shopify",
            criteria=ShopifyCriteria(subscribed_only=True, customer_tag="vip"),
            display_name="Shop",
            list_ids=["l1"],
            tags=["t1"],
        ),
        request_id="req-1",
    )
    app.save(agg)

    replayed = app.repository.get(agg.id)

    assert replayed == agg
    assert public_state(replayed) == public_state(agg)
    assert replayed.service == "shopify"
    assert replayed.state is ImportState.ACTIVE
    assert SOURCES["shopify"].criteria_of(replayed.criteria) == ShopifyCriteria(
        subscribed_only=True, customer_tag="vip"
    )


def _lifecycle_steps() -> list[tuple[str, Any]]:
    return [
        ("update", lambda a: update(a, ImportChanges(display_name="Renamed"), actor=ACTOR)),
        (
            "update-all-fields",
            lambda a: update(
                a,
                ImportChanges(
                    criteria=GoogleContactsCriteria(contact_group="contactGroups/friends"),
                    list_ids=["l2", "l3"],
                    tags=["t2"],
                ),
                actor=ACTOR,
            ),
        ),
        (
            "rotate-credentials",
            lambda a: update(
                a, ImportChanges(credentials=Credentials("new-access", "new-refresh")), actor=ACTOR
            ),
        ),
        ("pause", lambda a: a.pause(actor=ACTOR)),
        ("resume", lambda a: a.resume(actor=ACTOR)),
        ("reset-criteria", lambda a: update(a, ImportChanges(reset_criteria=True), actor=ACTOR)),
        ("pause-again", lambda a: a.pause(actor=ACTOR)),
        ("delete", lambda a: a.delete(actor=ACTOR)),
    ]


def test_replay_after_each_command_gives_an_equal_state():
    app = popo_application()
    agg = start(new_import(display_name="Original", list_ids=["l1"], tags=["t1"]))
    app.save(agg)

    for name, step in _lifecycle_steps():
        step(agg)
        app.save(agg)

        replayed = app.repository.get(agg.id)

        assert public_state(replayed) == public_state(agg), name
        assert replayed == agg, name
    assert agg.version == 1 + len(_lifecycle_steps())
    assert app.repository.get(agg.id).is_deleted is True


def test_replay_to_an_earlier_version_gives_the_state_at_that_version():
    app = popo_application()
    agg = start(new_import(display_name="Original", list_ids=["l1"], tags=["t1"]))
    app.save(agg)
    states = {agg.version: public_state(agg)}
    for _, step in _lifecycle_steps():
        step(agg)
        app.save(agg)
        states[agg.version] = public_state(agg)

    assert sorted(states) == list(range(1, len(_lifecycle_steps()) + 2))
    for version, state in states.items():
        assert public_state(app.repository.get(agg.id, version=version)) == state


def test_stored_history_lists_every_event_in_order_with_its_actor():
    app = popo_application()
    agg = start(new_import(), actor="creator")
    update(agg, ImportChanges(display_name="Renamed"), actor="editor")
    update(agg, ImportChanges(credentials=Credentials("new-access", "new-refresh")), actor="editor")
    agg.pause(actor="pauser")
    agg.resume(actor="resumer")
    agg.delete(actor="deleter")
    app.save(agg)

    history = list(app.events.get(agg.id))

    assert [type(e) for e in history] == [
        AutoImport.Created,
        AutoImport.Updated,
        AutoImport.CredentialsRotated,
        AutoImport.Paused,
        AutoImport.Resumed,
        AutoImport.Deleted,
    ]
    assert [e.actor for e in history] == [
        "creator",
        "editor",
        "editor",
        "pauser",
        "resumer",
        "deleter",
    ]
    assert [e.originator_version for e in history] == [1, 2, 3, 4, 5, 6]


# -- ValidationError --------------------------------------------------------------------------


def test_validation_error_under_nests_every_field_path_under_the_prefix():
    with pytest.raises(ValidationError) as excinfo:
        start(new_import(external_account="bad", tags=[""]))

    nested = excinfo.value.under("auto_import")

    assert set(fields_of(nested)) == {"auto_import.external_account", "auto_import.tags[0]"}
    assert [v.description for v in nested.violations] == [
        v.description for v in excinfo.value.violations
    ]


def test_validation_error_single_holds_one_violation():
    error = ValidationError.single("account_id", "is required")

    assert fields_of(error) == ["account_id"]
    assert str(error) == "account_id: is required"


@pytest.mark.parametrize("service", ["google_contacts", "shopify", "hubspot"])
def test_the_stored_criteria_give_the_criteria_type_of_the_service(service):
    criteria = SOURCES[service].criteria_of(start(new_import(service)).criteria)

    assert isinstance(criteria, Criteria)
    assert criteria.service == service


def test_pause_of_an_import_that_needs_reauth_is_refused():
    """Otherwise pause then resume would reactivate it with the credentials that were rejected."""
    agg = started()
    agg.state = ImportState.NEEDS_REAUTH

    with pytest.raises(ImportNeedsReauth):
        agg.pause(actor=ACTOR)

    assert agg.collect_events() == []
    assert agg.state is ImportState.NEEDS_REAUTH


def test_repr_of_the_aggregate_and_of_its_events_hides_the_credentials():
    agg = start(new_import("google_contacts"))
    update(
        agg, ImportChanges(credentials=Credentials("new-ACCESS-SECRET", "new-REFRESH")), actor=ACTOR
    )

    texts = [repr(agg)] + [repr(e) for e in agg.collect_events()]

    assert len(texts) == 3
    for text in texts:
        assert "SECRET" not in text and "new-REFRESH" not in text
    assert "credentials=<hidden>" in texts[0]


@pytest.mark.parametrize(
    ("service", "overrides", "field"),
    [
        ("shopify", {"external_account": "my-store\n/"}, "external_account"),
        ("hubspot", {"external_account": "123\n4"}, "external_account"),
        (
            "google_contacts",
            {"criteria": GoogleContactsCriteria("contactGroups/abc\n")},
            "criteria.google_contacts.contact_group",
        ),
        ("hubspot", {"criteria": HubSpotCriteria("١٢")}, "criteria.hubspot.lifecycle_stage"),
        ("hubspot", {"criteria": HubSpotCriteria("²")}, "criteria.hubspot.lifecycle_stage"),
    ],
)
def test_values_with_a_trailing_newline_or_non_ascii_digits_are_refused(service, overrides, field):
    with pytest.raises(ValidationError) as raised:
        start(new_import(service, **overrides))

    assert field in {v.field for v in raised.value.violations}

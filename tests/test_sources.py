"""The registry of sources and each source's rules: descriptions, criteria, field names, the
identity of external accounts. Every registered source must pass the registry-wide tests."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoimport.v1 import imports_pb2
from connectors import SOURCES
from connectors.google_contacts import GoogleContactsCriteria
from connectors.hubspot import HubSpotCriteria
from connectors.shopify import ShopifyCriteria
from domain.errors import ValidationError, Violations
from domain.external_account import ExternalAccount
from domain.sources import check_criteria, field_title, find_source, personalization_tag

SERVICE_IDS = tuple(SOURCES)


def identity_of(service: str, external_account: str) -> str:
    return SOURCES[service].external_account_identity(external_account)


def normalize(
    service: str, value: str, violations: Violations, field: str = "external_account"
) -> str:
    return SOURCES[service].normalize_external_account(value, violations, field)


# Every field of every connector: (service, field key, personalization tag, custom field title).
EXPECTED_FIELDS = [
    (
        "google_contacts",
        "company",
        "%GOOGLE_CONTACTS_COMPANY%",
        "Google Contacts Company",
    ),
    (
        "google_contacts",
        "job_title",
        "%GOOGLE_CONTACTS_JOB_TITLE%",
        "Google Contacts Job Title",
    ),
    (
        "google_contacts",
        "birthday",
        "%GOOGLE_CONTACTS_BIRTHDAY%",
        "Google Contacts Birthday",
    ),
    ("shopify", "total_spent", "%SHOPIFY_TOTAL_SPENT%", "Shopify Total Spent"),
    ("shopify", "orders_count", "%SHOPIFY_ORDERS_COUNT%", "Shopify Orders Count"),
    ("shopify", "tags", "%SHOPIFY_TAGS%", "Shopify Tags"),
    ("shopify", "company", "%SHOPIFY_COMPANY%", "Shopify Company"),
    ("shopify", "country", "%SHOPIFY_COUNTRY%", "Shopify Country"),
    ("hubspot", "company", "%HUBSPOT_COMPANY%", "HubSpot Company"),
    ("hubspot", "job_title", "%HUBSPOT_JOB_TITLE%", "HubSpot Job Title"),
    (
        "hubspot",
        "lifecycle_stage",
        "%HUBSPOT_LIFECYCLE_STAGE%",
        "HubSpot Lifecycle Stage",
    ),
]
TAG_PATTERN = re.compile(r"^%[A-Z0-9_]+%$")


def spec_of(service: str, key: str):
    description = SOURCES[service]
    (spec,) = [s for s in description.fields if s.key == key]
    return description, spec


def all_fields():
    return [(d, spec) for d in SOURCES.values() for spec in d.fields]


# -- service descriptions -------------------------------------------------------------------------


def test_every_source_is_registered_under_its_own_id():
    for service_id, source in SOURCES.items():
        assert source.id == service_id
        assert re.fullmatch(r"[a-z][a-z0-9_]*", service_id)
        assert source.display_name and source.description and source.criteria_description


def test_every_source_has_its_criteria_message_named_after_it_with_the_same_fields():
    """The AutoImport message's criteria oneof has one member per source, named after its id,
    whose fields are those of the source's criteria type: the API converts by name."""
    oneof = imports_pb2.AutoImport.DESCRIPTOR.oneofs_by_name["criteria"]
    members = {f.name: f.message_type for f in oneof.fields}

    assert set(members) == set(SOURCES)
    for service, source in SOURCES.items():
        message_fields = {f.name for f in members[service].fields}
        assert message_fields == {f.name for f in dataclasses.fields(source.criteria_type)}


def test_criteria_options_are_unique_across_sources():
    """Each criteria field is a CLI option (`--customer-tag`): one name, one service."""
    names = [f.name for s in SOURCES.values() for f in dataclasses.fields(s.criteria_type)]

    assert len(names) == len(set(names))


def test_the_expected_fields_of_each_service_listed_are_all_its_fields():
    """Examples of design.md's naming rule, by service; every other source is held to the rule
    by the tests below (and its own tests list its fields)."""
    listed = {s for s, _, _, _ in EXPECTED_FIELDS}
    described = sorted((d.id, spec.key) for d, spec in all_fields() if d.id in listed)

    assert described == sorted((s, key) for s, key, _, _ in EXPECTED_FIELDS)


@pytest.mark.parametrize(
    ("source", "spec"), all_fields(), ids=[f"{d.id}.{s.key}" for d, s in all_fields()]
)
def test_every_field_is_named_after_its_service_display_name(source, spec):
    assert source.title_of(spec) == f"{source.display_name} {spec.label}"
    assert source.tag_of(spec) == personalization_tag(source.display_name, spec.label)


@pytest.mark.parametrize(
    ("service", "key", "tag", "title"),
    EXPECTED_FIELDS,
    ids=[f"{s}.{key}" for s, key, _, _ in EXPECTED_FIELDS],
)
def test_personalization_tag_of_each_field(service, key, tag, title):
    description, spec = spec_of(service, key)

    assert description.tag_of(spec) == tag
    assert personalization_tag(description.display_name, spec.label) == tag


@pytest.mark.parametrize(
    ("service", "key", "tag", "title"),
    EXPECTED_FIELDS,
    ids=[f"{s}.{key}" for s, key, _, _ in EXPECTED_FIELDS],
)
def test_field_title_of_each_field(service, key, tag, title):
    description, spec = spec_of(service, key)

    assert description.title_of(spec) == title
    assert field_title(description.display_name, spec.label) == title


def test_a_label_from_a_source_loses_its_control_characters_in_the_title():
    """Mailchimp's merge field names, say, come from the source: NUL in a title stopped the
    read model's projection on PostgreSQL; ESC or an override would garble what is shown."""
    label = "Shoe\x00 size\x1b[0m\u202e"

    assert field_title("Mailchimp", label) == "Mailchimp Shoe size[0m"
    assert personalization_tag("Mailchimp", label) == "%MAILCHIMP_SHOE_SIZE_0M%"


@pytest.mark.parametrize(
    ("display_name", "label", "tag"),
    [
        ("Shop-ify", "Total (Spent)", "%SHOP_IFY_TOTAL__SPENT_%"),
        ("a.b", "c/d", "%A_B_C_D%"),
        ("Café", "Né le", "%CAF__N__LE%"),
        ("HubSpot", "Stage 2", "%HUBSPOT_STAGE_2%"),
        ("X", "e-mail@work", "%X_E_MAIL_WORK%"),
    ],
)
def test_personalization_tag_writes_every_non_alphanumeric_character_as_underscore(
    display_name, label, tag
):
    assert personalization_tag(display_name, label) == tag


def test_field_title_joins_service_and_label_with_a_space():
    assert field_title("Shopify", "Total Spent") == "Shopify Total Spent"


@pytest.mark.parametrize(
    ("description", "spec"), all_fields(), ids=[f"{d.id}.{s.key}" for d, s in all_fields()]
)
def test_every_tag_matches_the_tag_pattern(description, spec):
    assert TAG_PATTERN.match(description.tag_of(spec))


def test_tags_are_unique_across_all_services():
    tags = [d.tag_of(spec) for d, spec in all_fields()]

    assert len(tags) == len(set(tags))


def test_titles_are_unique_across_all_services():
    titles = [d.title_of(spec) for d, spec in all_fields()]

    assert len(titles) == len(set(titles))


def test_field_keys_are_unique_within_each_service():
    for description in SOURCES.values():
        keys = [spec.key for spec in description.fields]
        assert len(keys) == len(set(keys)), description.id


# -- criteria -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("criteria", "stored"),
    [
        (GoogleContactsCriteria(), {"contact_group": ""}),
        (
            GoogleContactsCriteria(contact_group="contactGroups/friends"),
            {"contact_group": "contactGroups/friends"},
        ),
        (ShopifyCriteria(), {"subscribed_only": False, "customer_tag": ""}),
        (
            ShopifyCriteria(subscribed_only=True, customer_tag="vip"),
            {"subscribed_only": True, "customer_tag": "vip"},
        ),
        (HubSpotCriteria(), {"lifecycle_stage": ""}),
        (HubSpotCriteria(lifecycle_stage="customer"), {"lifecycle_stage": "customer"}),
        (HubSpotCriteria(lifecycle_stage="12345"), {"lifecycle_stage": "12345"}),
    ],
)
def test_criteria_from_dict_round_trips_to_dict(criteria, stored):
    assert criteria.to_dict() == stored

    restored = SOURCES[criteria.service].criteria_of(criteria.to_dict())

    assert restored == criteria
    assert type(restored) is type(criteria)


@pytest.mark.parametrize(
    ("service", "criteria"),
    [
        ("google_contacts", GoogleContactsCriteria(contact_group="")),
        ("shopify", ShopifyCriteria(subscribed_only=False, customer_tag="")),
        ("hubspot", HubSpotCriteria(lifecycle_stage="")),
    ],
)
def test_criteria_from_an_empty_dict_are_the_default_criteria(service, criteria):
    restored = SOURCES[service].criteria_of({})

    assert restored == criteria
    assert type(restored) is type(criteria)


def test_each_source_has_a_criteria_type_of_that_service():
    for service, source in SOURCES.items():
        assert source.criteria_type.service == service


def test_check_criteria_nests_field_paths_under_the_given_field():
    violations = Violations()

    check_criteria(
        SOURCES["shopify"], ShopifyCriteria(customer_tag="a,b"), violations, "auto_import.criteria"
    )

    with pytest.raises(ValidationError) as excinfo:
        violations.raise_if_any()
    assert [v.field for v in excinfo.value.violations] == [
        "auto_import.criteria.shopify.customer_tag"
    ]


def test_check_criteria_accepts_valid_criteria_of_the_service():
    violations = Violations()

    check_criteria(SOURCES["hubspot"], HubSpotCriteria(lifecycle_stage="lead"), violations)

    violations.raise_if_any()


# -- services -------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICE_IDS)
def test_check_service_accepts_each_known_id(service):
    violations = Violations()

    assert find_source(SOURCES, service, violations) is SOURCES[service]
    violations.raise_if_any()


@pytest.mark.parametrize(
    "service", ["", "gmail", "Shopify", "SHOPIFY", " shopify", "google-contacts", "hub spot"]
)
def test_check_service_rejects_unknown_ids(service):
    violations = Violations()

    assert find_source(SOURCES, service, violations) is None

    with pytest.raises(ValidationError) as excinfo:
        violations.raise_if_any()
    (violation,) = excinfo.value.violations
    assert violation.field == "service"
    for known in SERVICE_IDS:
        assert known in violation.description


def test_check_service_reports_under_the_given_field():
    violations = Violations()

    find_source(SOURCES, "gmail", violations, field="auto_import.service")

    with pytest.raises(ValidationError) as excinfo:
        violations.raise_if_any()
    assert [v.field for v in excinfo.value.violations] == ["auto_import.service"]


def test_normalize_external_account_reports_under_the_given_field():
    violations = Violations()

    normalize("hubspot", "abc", violations, field="auto_import.account")

    with pytest.raises(ValidationError) as excinfo:
        violations.raise_if_any()
    assert [v.field for v in excinfo.value.violations] == ["auto_import.account"]


# -- one identity per external account, however it is spelled (invariant 4) -------------------


def budget_id(service: str, external_account: str, account_id: str = "acme") -> str:
    identity = identity_of(service, external_account)
    return str(ExternalAccount.create_id(account_id, service, identity))


@pytest.mark.parametrize(
    ("service", "spellings", "identity"),
    [
        (
            "google_contacts",
            [
                "johndoe@gmail.com",
                "john.doe@gmail.com",
                "John.Doe@Gmail.COM",
                " j.o.h.n.d.o.e@gmail.com ",
                "johndoe+newsletter@gmail.com",
                "john.doe+a.b@googlemail.com",
                "JohnDoe@GoogleMail.com",
            ],
            "johndoe@gmail.com",
        ),
        (
            "google_contacts",
            ["jane.roe@example.com", "Jane.Roe+crm@Example.COM", "jane.roe+@example.com"],
            "jane.roe@example.com",
        ),
        ("hubspot", ["12345", "0012345", " 012345 "], "12345"),
        ("hubspot", ["0", "000"], "0"),
        (
            "shopify",
            ["my-store", "My-Store", "my-store.myshopify.com", "https://MY-STORE.myshopify.com/"],
            "my-store",
        ),
    ],
)
def test_every_spelling_of_an_external_account_gives_its_identity_and_one_budget(
    service, spellings, identity
):
    assert {identity_of(service, s) for s in spellings} == {identity}
    assert {identity_of(service, s) for s in spellings} == {identity}
    assert {budget_id(service, s) for s in spellings} == {budget_id(service, identity)}


@pytest.mark.parametrize(
    ("service", "one", "other"),
    [
        # Outside Gmail a dot is part of the address: two Workspace users may differ by one.
        ("google_contacts", "j.doe@example.com", "jdoe@example.com"),
        ("google_contacts", "johndoe@gmail.com", "johndoe@example.com"),
        ("google_contacts", "johndoe@gmail.com", "johndoe1@gmail.com"),
        ("hubspot", "12345", "123450"),
        ("shopify", "my-store", "my-store-2"),
    ],
)
def test_different_external_accounts_have_different_budgets(service, one, other):
    assert identity_of(service, one) != identity_of(service, other)
    assert budget_id(service, one) != budget_id(service, other)


def test_a_budget_belongs_to_one_account_and_one_service():
    assert budget_id("hubspot", "12345") != budget_id("hubspot", "12345", "other")
    assert budget_id("hubspot", "12345") != budget_id("shopify", "12345")


def test_an_import_keeps_the_spelling_it_was_given():
    violations = Violations()

    google = normalize("google_contacts", " John.Doe+crm@GoogleMail.com", violations)
    hubspot = normalize("hubspot", "12345", violations)

    violations.raise_if_any()
    assert (google, hubspot) == ("john.doe+crm@googlemail.com", "12345")


GMAIL_USER = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=30)


@st.composite
def gmail_spellings(draw: st.DrawFn, user: str) -> str:
    """`user`'s Gmail address with dots between any letters, any letters in upper case, maybe a
    +tag and the googlemail.com domain."""
    spelled = user[0]
    for char in user[1:]:
        spelled += ("." if draw(st.booleans()) else "") + char
    spelled = "".join(c.upper() if draw(st.booleans()) else c for c in spelled)
    tag = draw(st.one_of(st.just(""), GMAIL_USER.map(lambda t: f"+{t}")))
    domain = draw(st.sampled_from(["gmail.com", "googlemail.com", "GMail.com", "GoogleMail.COM"]))
    return f"{spelled}{tag}@{domain}"


@given(st.data(), GMAIL_USER)
def test_any_gmail_spelling_of_a_user_gives_one_budget(data, user):
    one = data.draw(gmail_spellings(user))
    other = data.draw(gmail_spellings(user))

    assert identity_of("google_contacts", one) == f"{user}@gmail.com"
    assert budget_id("google_contacts", one) == budget_id("google_contacts", other)


@given(st.data(), GMAIL_USER, GMAIL_USER)
def test_gmail_users_that_differ_have_different_budgets(data, user, other_user):
    one = data.draw(gmail_spellings(user))
    other = data.draw(gmail_spellings(other_user))

    same = budget_id("google_contacts", one) == budget_id("google_contacts", other)
    assert same == (user == other_user)


@given(st.data(), GMAIL_USER)
def test_the_identity_of_a_stored_spelling_is_the_identity_of_the_typed_one(data, user):
    typed = data.draw(gmail_spellings(user))
    violations = Violations()

    stored = normalize("google_contacts", typed, violations)

    violations.raise_if_any()
    identity = identity_of("google_contacts", typed)
    assert identity_of("google_contacts", stored) == identity
    assert identity_of("google_contacts", identity) == identity


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=5))
def test_any_zero_padding_of_a_portal_id_gives_its_number(portal, zeros):
    padded = "0" * zeros + str(portal)

    assert identity_of("hubspot", padded) == str(portal)


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12))
def test_different_portal_ids_have_different_budgets(one, other):
    same = budget_id("hubspot", f"00{one}") == budget_id("hubspot", str(other))
    assert same == (one == other)


SHOP_HANDLE = st.from_regex(r"[a-z0-9][a-z0-9-]{0,59}", fullmatch=True)


@given(st.data(), SHOP_HANDLE)
def test_any_spelling_of_a_shop_gives_its_handle_as_normalized(data, handle):
    cased = "".join(c.upper() if data.draw(st.booleans()) else c for c in handle)
    suffix = data.draw(st.sampled_from(["", ".myshopify.com", ".MyShopify.com"]))
    prefix = data.draw(st.sampled_from(["", "https://"]))
    typed = f"{prefix}{cased}{suffix}"
    violations = Violations()

    stored = normalize("shopify", typed, violations)

    violations.raise_if_any()
    assert stored == handle
    assert identity_of("shopify", typed) == handle
    assert identity_of("shopify", stored) == handle

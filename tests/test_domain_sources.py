"""Unit tests of domain.sources: services, criteria, and the names of the fields an import fills."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors import SERVICES
from domain.errors import ValidationError, Violations
from domain.external_account import ExternalAccount
from domain.sources import (
    CRITERIA_TYPES,
    SERVICE_IDS,
    GoogleContactsCriteria,
    HubSpotCriteria,
    ServiceId,
    ShopifyCriteria,
    check_criteria,
    check_service,
    criteria_from_dict,
    external_account_identity,
    field_title,
    normalize_external_account,
    personalization_tag,
)

# Every field of every connector: (service, field key, personalization tag, custom field title).
EXPECTED_FIELDS = [
    (
        ServiceId.GOOGLE_CONTACTS,
        "company",
        "%GOOGLE_CONTACTS_COMPANY%",
        "Google Contacts Company",
    ),
    (
        ServiceId.GOOGLE_CONTACTS,
        "job_title",
        "%GOOGLE_CONTACTS_JOB_TITLE%",
        "Google Contacts Job Title",
    ),
    (
        ServiceId.GOOGLE_CONTACTS,
        "birthday",
        "%GOOGLE_CONTACTS_BIRTHDAY%",
        "Google Contacts Birthday",
    ),
    (ServiceId.SHOPIFY, "total_spent", "%SHOPIFY_TOTAL_SPENT%", "Shopify Total Spent"),
    (ServiceId.SHOPIFY, "orders_count", "%SHOPIFY_ORDERS_COUNT%", "Shopify Orders Count"),
    (ServiceId.SHOPIFY, "tags", "%SHOPIFY_TAGS%", "Shopify Tags"),
    (ServiceId.SHOPIFY, "company", "%SHOPIFY_COMPANY%", "Shopify Company"),
    (ServiceId.SHOPIFY, "country", "%SHOPIFY_COUNTRY%", "Shopify Country"),
    (ServiceId.HUBSPOT, "company", "%HUBSPOT_COMPANY%", "HubSpot Company"),
    (ServiceId.HUBSPOT, "job_title", "%HUBSPOT_JOB_TITLE%", "HubSpot Job Title"),
    (
        ServiceId.HUBSPOT,
        "lifecycle_stage",
        "%HUBSPOT_LIFECYCLE_STAGE%",
        "HubSpot Lifecycle Stage",
    ),
]
TAG_PATTERN = re.compile(r"^%[A-Z0-9_]+%$")


def spec_of(service: ServiceId, key: str):
    description = SERVICES[service]
    (spec,) = [s for s in description.fields if s.key == key]
    return description, spec


def all_fields():
    return [(d, spec) for d in SERVICES.values() for spec in d.fields]


# -- service descriptions -------------------------------------------------------------------------


def test_every_service_has_a_description_under_its_own_id():
    assert set(SERVICES) == set(ServiceId)
    for service_id, description in SERVICES.items():
        assert description.id is service_id


def test_expected_fields_cover_every_field_of_every_service():
    described = sorted((d.id.value, spec.key) for d, spec in all_fields())

    assert described == sorted((s.value, key) for s, key, _, _ in EXPECTED_FIELDS)


@pytest.mark.parametrize(
    ("service", "key", "tag", "title"),
    EXPECTED_FIELDS,
    ids=[f"{s.value}.{key}" for s, key, _, _ in EXPECTED_FIELDS],
)
def test_personalization_tag_of_each_field(service, key, tag, title):
    description, spec = spec_of(service, key)

    assert description.tag_of(spec) == tag
    assert personalization_tag(description.display_name, spec.label) == tag


@pytest.mark.parametrize(
    ("service", "key", "tag", "title"),
    EXPECTED_FIELDS,
    ids=[f"{s.value}.{key}" for s, key, _, _ in EXPECTED_FIELDS],
)
def test_field_title_of_each_field(service, key, tag, title):
    description, spec = spec_of(service, key)

    assert description.title_of(spec) == title
    assert field_title(description.display_name, spec.label) == title


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
    ("description", "spec"), all_fields(), ids=[f"{d.id.value}.{s.key}" for d, s in all_fields()]
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
    for description in SERVICES.values():
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

    restored = criteria_from_dict(criteria.service, criteria.to_dict())

    assert restored == criteria
    assert type(restored) is type(criteria)


@pytest.mark.parametrize(
    ("service", "criteria"),
    [
        (ServiceId.GOOGLE_CONTACTS, GoogleContactsCriteria(contact_group="")),
        (ServiceId.SHOPIFY, ShopifyCriteria(subscribed_only=False, customer_tag="")),
        (ServiceId.HUBSPOT, HubSpotCriteria(lifecycle_stage="")),
    ],
)
def test_criteria_from_an_empty_dict_are_the_default_criteria(service, criteria):
    restored = criteria_from_dict(service, {})

    assert restored == criteria
    assert type(restored) is type(criteria)


def test_each_service_has_a_criteria_type_of_that_service():
    assert set(CRITERIA_TYPES) == set(ServiceId)
    for service, criteria_type in CRITERIA_TYPES.items():
        assert criteria_type.service is service


def test_check_criteria_nests_field_paths_under_the_given_field():
    violations = Violations()

    check_criteria(
        ServiceId.SHOPIFY, ShopifyCriteria(customer_tag="a,b"), violations, "auto_import.criteria"
    )

    with pytest.raises(ValidationError) as excinfo:
        violations.raise_if_any()
    assert [v.field for v in excinfo.value.violations] == [
        "auto_import.criteria.shopify.customer_tag"
    ]


def test_check_criteria_accepts_valid_criteria_of_the_service():
    violations = Violations()

    check_criteria(ServiceId.HUBSPOT, HubSpotCriteria(lifecycle_stage="lead"), violations)

    violations.raise_if_any()


# -- services -------------------------------------------------------------------------------------


def test_service_ids_are_the_values_of_service_id():
    assert SERVICE_IDS == ("google_contacts", "shopify", "hubspot")


@pytest.mark.parametrize("service", SERVICE_IDS)
def test_check_service_accepts_each_known_id(service):
    violations = Violations()

    assert check_service(service, violations) is ServiceId(service)
    violations.raise_if_any()


@pytest.mark.parametrize(
    "service", ["", "gmail", "Shopify", "SHOPIFY", " shopify", "google-contacts", "hub spot"]
)
def test_check_service_rejects_unknown_ids(service):
    violations = Violations()

    assert check_service(service, violations) is None

    with pytest.raises(ValidationError) as excinfo:
        violations.raise_if_any()
    (violation,) = excinfo.value.violations
    assert violation.field == "service"
    for known in SERVICE_IDS:
        assert known in violation.description


def test_check_service_reports_under_the_given_field():
    violations = Violations()

    check_service("gmail", violations, field="auto_import.service")

    with pytest.raises(ValidationError) as excinfo:
        violations.raise_if_any()
    assert [v.field for v in excinfo.value.violations] == ["auto_import.service"]


def test_normalize_external_account_reports_under_the_given_field():
    violations = Violations()

    normalize_external_account(ServiceId.HUBSPOT, "abc", violations, field="auto_import.account")

    with pytest.raises(ValidationError) as excinfo:
        violations.raise_if_any()
    assert [v.field for v in excinfo.value.violations] == ["auto_import.account"]


# -- one identity per external account, however it is spelled (invariant 4) -------------------


def budget_id(service: ServiceId, external_account: str, account_id: str = "acme") -> str:
    return str(ExternalAccount.create_id(account_id, service.value, external_account))


@pytest.mark.parametrize(
    ("service", "spellings", "identity"),
    [
        (
            ServiceId.GOOGLE_CONTACTS,
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
            ServiceId.GOOGLE_CONTACTS,
            ["jane.roe@example.com", "Jane.Roe+crm@Example.COM", "jane.roe+@example.com"],
            "jane.roe@example.com",
        ),
        (ServiceId.HUBSPOT, ["12345", "0012345", " 012345 "], "12345"),
        (ServiceId.HUBSPOT, ["0", "000"], "0"),
        (
            ServiceId.SHOPIFY,
            ["my-store", "My-Store", "my-store.myshopify.com", "https://MY-STORE.myshopify.com/"],
            "my-store",
        ),
    ],
)
def test_every_spelling_of_an_external_account_gives_its_identity_and_one_budget(
    service, spellings, identity
):
    assert {external_account_identity(service, s) for s in spellings} == {identity}
    assert {external_account_identity(service.value, s) for s in spellings} == {identity}
    assert {budget_id(service, s) for s in spellings} == {budget_id(service, identity)}


@pytest.mark.parametrize(
    ("service", "one", "other"),
    [
        # Outside Gmail a dot is part of the address: two Workspace users may differ by one.
        (ServiceId.GOOGLE_CONTACTS, "j.doe@example.com", "jdoe@example.com"),
        (ServiceId.GOOGLE_CONTACTS, "johndoe@gmail.com", "johndoe@example.com"),
        (ServiceId.GOOGLE_CONTACTS, "johndoe@gmail.com", "johndoe1@gmail.com"),
        (ServiceId.HUBSPOT, "12345", "123450"),
        (ServiceId.SHOPIFY, "my-store", "my-store-2"),
    ],
)
def test_different_external_accounts_have_different_budgets(service, one, other):
    assert external_account_identity(service, one) != external_account_identity(service, other)
    assert budget_id(service, one) != budget_id(service, other)


def test_a_budget_belongs_to_one_account_and_one_service():
    assert budget_id(ServiceId.HUBSPOT, "12345") != budget_id(ServiceId.HUBSPOT, "12345", "other")
    assert budget_id(ServiceId.HUBSPOT, "12345") != budget_id(ServiceId.SHOPIFY, "12345")


def test_an_import_keeps_the_spelling_it_was_given():
    violations = Violations()

    google = normalize_external_account(
        ServiceId.GOOGLE_CONTACTS, " John.Doe+crm@GoogleMail.com", violations
    )
    hubspot = normalize_external_account(ServiceId.HUBSPOT, "12345", violations)

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

    assert external_account_identity(ServiceId.GOOGLE_CONTACTS, one) == f"{user}@gmail.com"
    assert budget_id(ServiceId.GOOGLE_CONTACTS, one) == budget_id(ServiceId.GOOGLE_CONTACTS, other)


@given(st.data(), GMAIL_USER, GMAIL_USER)
def test_gmail_users_that_differ_have_different_budgets(data, user, other_user):
    one = data.draw(gmail_spellings(user))
    other = data.draw(gmail_spellings(other_user))

    same = budget_id(ServiceId.GOOGLE_CONTACTS, one) == budget_id(ServiceId.GOOGLE_CONTACTS, other)
    assert same == (user == other_user)


@given(st.data(), GMAIL_USER)
def test_the_identity_of_a_stored_spelling_is_the_identity_of_the_typed_one(data, user):
    typed = data.draw(gmail_spellings(user))
    violations = Violations()

    stored = normalize_external_account(ServiceId.GOOGLE_CONTACTS, typed, violations)

    violations.raise_if_any()
    identity = external_account_identity(ServiceId.GOOGLE_CONTACTS, typed)
    assert external_account_identity(ServiceId.GOOGLE_CONTACTS, stored) == identity
    assert external_account_identity(ServiceId.GOOGLE_CONTACTS, identity) == identity


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=5))
def test_any_zero_padding_of_a_portal_id_gives_its_number(portal, zeros):
    padded = "0" * zeros + str(portal)

    assert external_account_identity(ServiceId.HUBSPOT, padded) == str(portal)


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12))
def test_different_portal_ids_have_different_budgets(one, other):
    same = budget_id(ServiceId.HUBSPOT, f"00{one}") == budget_id(ServiceId.HUBSPOT, str(other))
    assert same == (one == other)


SHOP_HANDLE = st.from_regex(r"[a-z0-9][a-z0-9-]{0,59}", fullmatch=True)


@given(st.data(), SHOP_HANDLE)
def test_any_spelling_of_a_shop_gives_its_handle_as_normalized(data, handle):
    cased = "".join(c.upper() if data.draw(st.booleans()) else c for c in handle)
    suffix = data.draw(st.sampled_from(["", ".myshopify.com", ".MyShopify.com"]))
    prefix = data.draw(st.sampled_from(["", "https://"]))
    typed = f"{prefix}{cased}{suffix}"
    violations = Violations()

    stored = normalize_external_account(ServiceId.SHOPIFY, typed, violations)

    violations.raise_if_any()
    assert stored == handle
    assert external_account_identity(ServiceId.SHOPIFY, typed) == handle
    assert external_account_identity(ServiceId.SHOPIFY, stored) == handle

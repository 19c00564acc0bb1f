"""AutoImportService end to end: real server process, real socket, generated stubs, both stores."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2

from autoimport.v1 import imports_pb2 as pb
from connectors import SOURCES
from tests.support import Client, rich_status

SECRET = "shpat_TOPSECRET_d41d8cd98f00"


def shopify_import(**overrides) -> pb.AutoImport:
    fields = {
        "service": "shopify",
        "external_account": "my-store",
        "credentials": pb.Credentials(access_token=SECRET),
        "shopify": pb.ShopifyCriteria(subscribed_only=True, customer_tag="vip"),
        "list_ids": ["newsletter"],
        "tags": ["from-shopify"],
    }
    fields.update(overrides)
    return pb.AutoImport(**fields)


def create(
    client: Client, account: str, auto_import: pb.AutoImport | None = None, **kw
) -> pb.AutoImport:
    return client.imports.CreateImport(
        pb.CreateImportRequest(
            account_id=account, auto_import=auto_import or shopify_import(), **kw
        )
    )


def error_of(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)
    return raised.value


def violations(error: grpc.RpcError) -> dict[str, str]:
    bad_request = rich_status(error)["BadRequest"]
    return {v.field: v.description for v in bad_request.field_violations}


# -- create and read -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auto_import", "criteria_field"),
    [
        (
            pb.AutoImport(
                service="google_contacts",
                external_account="Owner@Example.com",
                credentials=pb.Credentials(access_token=SECRET, refresh_token="1//refresh"),
                google_contacts=pb.GoogleContactsCriteria(contact_group="contactGroups/friends"),
            ),
            "google_contacts",
        ),
        (shopify_import(), "shopify"),
        (
            pb.AutoImport(
                service="hubspot",
                external_account="4242",
                credentials=pb.Credentials(access_token=SECRET),
                hubspot=pb.HubSpotCriteria(lifecycle_stage="customer"),
            ),
            "hubspot",
        ),
    ],
)
def test_create_then_get_returns_the_import_without_credentials(
    account_client: Client, account: str, auto_import: pb.AutoImport, criteria_field: str
):
    created = create(account_client, account, auto_import)

    assert created.name.startswith(f"accounts/{account}/imports/")
    assert created.state == pb.AutoImport.ACTIVE
    assert created.etag == '"1"'
    assert created.WhichOneof("criteria") == criteria_field
    assert getattr(created, criteria_field) == getattr(auto_import, criteria_field)
    assert not created.HasField("credentials")
    fetched = account_client.imports.GetImport(pb.GetImportRequest(name=created.name))
    assert fetched == created
    assert SECRET not in str(fetched)


def test_external_account_is_normalized_and_names_the_default_display_name(
    account_client: Client, account: str
):
    created = create(
        account_client, account, shopify_import(external_account="My-Store.myshopify.com")
    )

    assert created.external_account == "my-store"
    assert created.display_name == "Shopify (my-store)"


def test_create_without_criteria_selects_every_contact(account_client: Client, account: str):
    created = create(account_client, account, shopify_import(shopify=None))

    assert created.WhichOneof("criteria") == "shopify"
    assert created.shopify == pb.ShopifyCriteria()


def test_repeated_request_id_returns_the_same_import(account_client: Client, account: str):
    request_id = str(uuid.uuid4())

    first = create(account_client, account, request_id=request_id)
    second = create(account_client, account, request_id=request_id)

    assert second.name == first.name
    listed = account_client.imports.ListImports(pb.ListImportsRequest(account_id=account))
    assert [i.name for i in listed.auto_imports] == [first.name]


def test_request_id_must_be_a_uuid(account_client: Client, account: str):
    error = error_of(create, account_client, account, request_id="retry-1")

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in violations(error)


@pytest.mark.parametrize(
    ("auto_import", "field"),
    [
        (shopify_import(service="shopfy"), "auto_import.service"),
        (shopify_import(external_account="not a shop!"), "auto_import.external_account"),
        (shopify_import(credentials=pb.Credentials()), "auto_import.credentials.access_token"),
        (
            shopify_import(shopify=pb.ShopifyCriteria(customer_tag="a,b")),
            "auto_import.criteria.shopify.customer_tag",
        ),
        (
            shopify_import(hubspot=pb.HubSpotCriteria(lifecycle_stage="lead")),
            "auto_import.criteria.hubspot",
        ),
        (
            pb.AutoImport(
                service="hubspot",
                external_account="4242",
                credentials=pb.Credentials(access_token="x"),
                hubspot=pb.HubSpotCriteria(lifecycle_stage="prospect"),
            ),
            "auto_import.criteria.hubspot.lifecycle_stage",
        ),
        (
            pb.AutoImport(
                service="google_contacts",
                external_account="owner@example.com",
                credentials=pb.Credentials(access_token="x"),
            ),
            "auto_import.credentials.refresh_token",
        ),
        (
            pb.AutoImport(
                service="google_contacts",
                external_account="owner@example.com",
                credentials=pb.Credentials(access_token="x", refresh_token="y"),
                google_contacts=pb.GoogleContactsCriteria(contact_group="friends"),
            ),
            "auto_import.criteria.google_contacts.contact_group",
        ),
        (shopify_import(list_ids=["ok", "not ok"]), "auto_import.list_ids[1]"),
        (shopify_import(tags=["x" * 256]), "auto_import.tags[0]"),
    ],
)
def test_invalid_import_is_refused_naming_the_field(
    account_client: Client, account: str, auto_import: pb.AutoImport, field: str
):
    error = error_of(create, account_client, account, auto_import)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(error), violations(error)
    assert rich_status(error)["ErrorInfo"].domain == "autoimport.v1"
    listed = account_client.imports.ListImports(pb.ListImportsRequest(account_id=account))
    assert len(listed.auto_imports) == 0


def test_every_invalid_field_is_reported_at_once(account_client: Client, account: str):
    auto_import = shopify_import(external_account="", credentials=pb.Credentials(), tags=[""])

    error = error_of(create, account_client, account, auto_import)

    assert set(violations(error)) == {
        "auto_import.external_account",
        "auto_import.credentials.access_token",
        "auto_import.tags[0]",
    }


def test_import_in_an_unknown_account_is_not_found(admin: Client):
    error = error_of(create, admin, "no-such-account")

    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert "UpsertAccount" in error.details()


@pytest.mark.parametrize(
    "name_suffix", [str(uuid.uuid4()), str(uuid.uuid5(uuid.NAMESPACE_URL, "x"))]
)
def test_unknown_import_is_not_found(account_client: Client, account: str, name_suffix: str):
    name = f"accounts/{account}/imports/{name_suffix}"

    error = error_of(account_client.imports.GetImport, pb.GetImportRequest(name=name))

    assert error.code() is grpc.StatusCode.NOT_FOUND
    info = rich_status(error)
    assert info["ResourceInfo"].resource_name == name
    assert info["ErrorInfo"].reason == "IMPORT_NOT_FOUND"


@pytest.mark.parametrize(
    "name", ["", "imports/1", "accounts/a/imports/not-a-uuid", "accounts//imports/x"]
)
def test_malformed_name_is_invalid(account_client: Client, name: str):
    error = error_of(account_client.imports.GetImport, pb.GetImportRequest(name=name))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in violations(error)


def test_import_of_another_account_reads_as_not_found_under_the_callers_name(
    account_client: Client, account: str, admin: Client
):
    """Asking for another account's import id under one's own account reveals nothing."""
    other = _other_account(admin)
    theirs = create(admin, other)
    import_id = theirs.name.rsplit("/", 1)[1]

    error = error_of(
        account_client.imports.GetImport,
        pb.GetImportRequest(name=f"accounts/{account}/imports/{import_id}"),
    )

    assert error.code() is grpc.StatusCode.NOT_FOUND


# -- update --------------------------------------------------------------------------------


def update(client: Client, auto_import: pb.AutoImport, *paths: str) -> pb.AutoImport:
    mask = field_mask_pb2.FieldMask(paths=list(paths)) if paths else None
    return client.imports.UpdateImport(
        pb.UpdateImportRequest(auto_import=auto_import, update_mask=mask)
    )


def test_update_changes_only_the_masked_fields(account_client: Client, account: str):
    created = create(account_client, account)
    change = pb.AutoImport(
        name=created.name, etag=created.etag, display_name="Renamed", tags=["ignored"]
    )

    updated = update(account_client, change, "display_name")

    assert updated.display_name == "Renamed"
    assert list(updated.tags) == ["from-shopify"]
    assert updated.etag == '"2"'
    assert updated.update_time.ToDatetime() > created.update_time.ToDatetime()


def test_update_without_mask_changes_the_fields_that_are_set(account_client: Client, account: str):
    created = create(account_client, account)

    updated = update(account_client, pb.AutoImport(name=created.name, tags=["a", "b"]))

    assert list(updated.tags) == ["a", "b"]
    assert updated.display_name == created.display_name
    assert list(updated.list_ids) == ["newsletter"]


def test_update_with_star_mask_replaces_every_updatable_field(account_client: Client, account: str):
    created = create(account_client, account)
    replacement = pb.AutoImport(
        name=created.name,
        display_name="All new",
        credentials=pb.Credentials(access_token="new-token"),
    )

    updated = update(account_client, replacement, "*")

    assert updated.display_name == "All new"
    assert list(updated.tags) == [] and list(updated.list_ids) == []
    assert updated.shopify == pb.ShopifyCriteria()


def test_update_of_criteria_and_credentials(account_client: Client, account: str):
    created = create(account_client, account)
    change = pb.AutoImport(
        name=created.name,
        shopify=pb.ShopifyCriteria(customer_tag="gold"),
        credentials=pb.Credentials(access_token="rotated-token"),
    )

    updated = update(account_client, change, "shopify.customer_tag", "credentials")

    assert updated.shopify == pb.ShopifyCriteria(customer_tag="gold")
    history = list(
        account_client.imports.GetImportHistory(pb.GetImportHistoryRequest(name=created.name))
    )
    assert [e.type for e in history] == ["Created", "Updated", "CredentialsRotated"]
    assert "rotated-token" not in str(history)


def test_update_with_a_stale_etag_is_aborted_and_changes_nothing(
    account_client: Client, account: str
):
    created = create(account_client, account)
    update(
        account_client, pb.AutoImport(name=created.name, etag=created.etag, tags=["first"]), "tags"
    )

    error = error_of(
        update,
        account_client,
        pb.AutoImport(name=created.name, etag=created.etag, tags=["second"]),
        "tags",
    )

    assert error.code() is grpc.StatusCode.ABORTED
    assert rich_status(error)["ErrorInfo"].metadata["currentEtag"] == '"2"'
    current = account_client.imports.GetImport(pb.GetImportRequest(name=created.name))
    assert list(current.tags) == ["first"]


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("service", "cannot change"),
        ("external_account", "cannot change"),
        ("state", "output only"),
        ("etag", "output only"),
        ("colour", "unknown field"),
    ],
)
def test_update_mask_naming_a_field_that_cannot_be_updated_is_invalid(
    account_client: Client, account: str, path: str, says: str
):
    created = create(account_client, account)

    error = error_of(update, account_client, pb.AutoImport(name=created.name), path)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert says in violations(error)["update_mask"]


def test_update_with_criteria_of_another_service_is_invalid(account_client: Client, account: str):
    created = create(account_client, account)
    change = pb.AutoImport(name=created.name, hubspot=pb.HubSpotCriteria(lifecycle_stage="lead"))

    error = error_of(update, account_client, change, "criteria")

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "auto_import.criteria.hubspot" in violations(error)


# -- pause, resume, delete -----------------------------------------------------------------


def test_pause_and_resume(account_client: Client, account: str):
    created = create(account_client, account)

    paused = account_client.imports.PauseImport(pb.PauseImportRequest(name=created.name))
    resumed = account_client.imports.ResumeImport(pb.ResumeImportRequest(name=created.name))

    assert paused.state == pb.AutoImport.PAUSED
    assert not paused.HasField("next_sync_time")
    assert resumed.state == pb.AutoImport.ACTIVE
    assert resumed.HasField("next_sync_time")


def test_resume_of_an_active_import_fails_its_precondition(account_client: Client, account: str):
    created = create(account_client, account)

    error = error_of(account_client.imports.ResumeImport, pb.ResumeImportRequest(name=created.name))

    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert rich_status(error)["ErrorInfo"].reason == "IMPORT_NOT_PAUSED"


def test_pause_of_a_paused_import_fails_its_precondition(account_client: Client, account: str):
    created = create(account_client, account)
    account_client.imports.PauseImport(pb.PauseImportRequest(name=created.name))

    error = error_of(account_client.imports.PauseImport, pb.PauseImportRequest(name=created.name))

    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION


def test_deleted_import_is_gone_from_get_list_and_update_but_its_history_stays(
    account_client: Client, account: str
):
    created = create(account_client, account)

    account_client.imports.DeleteImport(
        pb.DeleteImportRequest(name=created.name, etag=created.etag)
    )

    get_error = error_of(account_client.imports.GetImport, pb.GetImportRequest(name=created.name))
    assert get_error.code() is grpc.StatusCode.NOT_FOUND
    update_error = error_of(update, account_client, pb.AutoImport(name=created.name, tags=["x"]))
    assert update_error.code() is grpc.StatusCode.NOT_FOUND
    delete_again = error_of(
        account_client.imports.DeleteImport, pb.DeleteImportRequest(name=created.name)
    )
    assert delete_again.code() is grpc.StatusCode.NOT_FOUND
    listed = account_client.imports.ListImports(pb.ListImportsRequest(account_id=account))
    assert listed.auto_imports == [] and listed.counts_by_service["shopify"] == 0
    history = account_client.imports.GetImportHistory(pb.GetImportHistoryRequest(name=created.name))
    assert [e.type for e in history] == ["Created", "Deleted"]


def test_delete_with_a_stale_etag_is_aborted_and_keeps_the_import(
    account_client: Client, account: str
):
    created = create(account_client, account)
    account_client.imports.PauseImport(pb.PauseImportRequest(name=created.name))

    error = error_of(
        account_client.imports.DeleteImport,
        pb.DeleteImportRequest(name=created.name, etag=created.etag),
    )

    assert error.code() is grpc.StatusCode.ABORTED
    assert (
        account_client.imports.GetImport(pb.GetImportRequest(name=created.name)).state
        == pb.AutoImport.PAUSED
    )


# -- history -------------------------------------------------------------------------------


def test_history_lists_every_event_in_order_with_actor_and_time(
    account_client: Client, account: str, admin: Client
):
    created = create(account_client, account)
    update(account_client, pb.AutoImport(name=created.name, tags=["t"]), "tags")
    admin.imports.PauseImport(pb.PauseImportRequest(name=created.name))
    account_client.imports.ResumeImport(pb.ResumeImportRequest(name=created.name))
    admin.imports.DeleteImport(pb.DeleteImportRequest(name=created.name))

    history = list(
        account_client.imports.GetImportHistory(pb.GetImportHistoryRequest(name=created.name))
    )

    assert [(e.version, e.type) for e in history] == [
        (1, "Created"),
        (2, "Updated"),
        (3, "Paused"),
        (4, "Resumed"),
        (5, "Deleted"),
    ]
    actors = [e.actor for e in history]
    assert actors[0].startswith("key:") and actors[2] == "admin" and actors[4] == "admin"
    times = [e.time.ToDatetime() for e in history]
    assert times == sorted(times)
    assert history[0].details["external_account"] == "my-store"
    assert history[0].details["criteria"]["customer_tag"] == "vip"
    assert SECRET not in str(history)
    assert dict(history[1].details["changes"]) == {"tags": ["t"]}


# -- list, counts, services ----------------------------------------------------------------


def test_counts_by_service_follow_creates_and_deletes(account_client: Client, account: str):
    google = pb.AutoImport(
        service="google_contacts",
        external_account="a@example.com",
        credentials=pb.Credentials(access_token="x", refresh_token="y"),
    )
    hubspot = pb.AutoImport(
        service="hubspot", external_account="77", credentials=pb.Credentials(access_token="x")
    )
    made = [
        create(account_client, account, i)
        for i in (google, shopify_import(), shopify_import(), hubspot)
    ]
    account_client.imports.DeleteImport(pb.DeleteImportRequest(name=made[1].name))

    listed = account_client.imports.ListImports(pb.ListImportsRequest(account_id=account))
    services = account_client.imports.ListServices(pb.ListServicesRequest(account_id=account))

    assert dict(listed.counts_by_service) == {
        **{service: 0 for service in SOURCES},  # every registered service, even without imports
        "google_contacts": 1,
        "shopify": 1,
        "hubspot": 1,
    }
    assert {s.id: s.import_count for s in services.services} == dict(listed.counts_by_service)
    only_shopify = account_client.imports.ListImports(
        pb.ListImportsRequest(account_id=account, service="shopify")
    )
    assert [i.name for i in only_shopify.auto_imports] == [made[2].name]


def test_list_pages_through_every_import_once(account_client: Client, account: str):
    names = [create(account_client, account).name for _ in range(5)]

    seen, token, pages = [], "", 0
    while True:
        page = account_client.imports.ListImports(
            pb.ListImportsRequest(account_id=account, page_size=2, page_token=token)
        )
        seen += [i.name for i in page.auto_imports]
        pages += 1
        token = page.next_page_token
        if not token:
            break

    assert seen == names and pages == 3


@pytest.mark.parametrize("token", ["garbage", "eyJhZnRlciI6IFsxXX0"])
def test_a_page_token_not_issued_by_the_server_is_invalid(
    account_client: Client, account: str, token: str
):
    error = error_of(
        account_client.imports.ListImports,
        pb.ListImportsRequest(account_id=account, page_token=token),
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in violations(error)


def test_a_page_token_of_another_query_is_invalid(account_client: Client, account: str):
    for _ in range(3):
        create(account_client, account)
    page = account_client.imports.ListImports(
        pb.ListImportsRequest(account_id=account, page_size=1)
    )

    error = error_of(
        account_client.imports.ListImports,
        pb.ListImportsRequest(
            account_id=account, service="hubspot", page_token=page.next_page_token
        ),
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("request_fields", "field"), [({"page_size": -1}, "page_size"), ({"service": "x"}, "service")]
)
def test_invalid_list_requests(account_client: Client, account: str, request_fields, field):
    error = error_of(
        account_client.imports.ListImports,
        pb.ListImportsRequest(account_id=account, **request_fields),
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(error)


def test_list_services_describes_fields_and_tags(account_client: Client, account: str):
    services = account_client.imports.ListServices(
        pb.ListServicesRequest(account_id=account)
    ).services

    by_id = {s.id: s for s in services}
    assert set(by_id) == set(SOURCES)
    company = next(f for f in by_id["google_contacts"].fields if f.key == "company")
    assert company.title == "Google Contacts Company"
    assert company.personalization_tag == "%GOOGLE_CONTACTS_COMPANY%"
    assert {f.personalization_tag for f in by_id["shopify"].fields} >= {
        "%SHOPIFY_TOTAL_SPENT%",
        "%SHOPIFY_ORDERS_COUNT%",
    }
    assert {f.personalization_tag for f in by_id["hubspot"].fields} >= {"%HUBSPOT_LIFECYCLE_STAGE%"}


def _other_account(admin: Client) -> str:
    from autoimport.v1 import accounts_pb2

    other = f"other-{uuid.uuid4().hex[:8]}"
    admin.accounts.UpsertAccount(
        accounts_pb2.UpsertAccountRequest(
            account=accounts_pb2.Account(account_id=other, plan="lite", contact_limit=10)
        )
    )
    return other

"""PreviewImport's promise: it says what the next sync will do with the page it reads, and
saves nothing. Checked as a property: for any page (new, existing, invalid, missing and
refused records, opted out or not), any contact limit and any budget left in the window, the
preview's counts are the counts of the sync that follows it, and the store is as before."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import DeadlinePassed
from domain.import_settings import Credentials, NewImport
from domain.sync import Outcome
from service.config import Settings
from service.errors import NotFound
from service.preview import Previewer
from tests.test_sync import INTERVAL, World

serial = itertools.count()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("preview")
    w = World(Settings.from_env({"AUTOIMPORT_DATA_DIR": str(folder)}))
    yield w
    w.close()


def previewer(world: World) -> Previewer:
    return Previewer(world.app, world.connectors, interval=INTERVAL, clock=world.clock)


RECORD = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["new", "existing", "missing", "invalid", "refused"]),
        "opted_out": st.booleans(),
        "spent": st.sampled_from(["", "12.50"]),
        "renamed": st.booleans(),
    }
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(RECORD, min_size=1, max_size=40),
    room=st.integers(min_value=0, max_value=40),
    used=st.sampled_from([0, 480, 495, 500]),
)
def test_a_preview_says_what_the_next_sync_does_and_saves_nothing(
    world: World, records: list[dict[str, object]], room: int, used: int
):
    n = next(serial)
    account, shop, other = f"acct{n}", f"shop-{n}", f"other-{n}"
    existing = [f"old{i}@example.com" for i, r in enumerate(records) if r["kind"] == "existing"]
    # The account's contacts before: those the page updates, read from another shop, and the
    # sibling's; then `room` for new ones.
    world.account(account, limit=max(1, len(existing) + used + room))
    earlier = world.new_import(other, account)
    for i, email in enumerate(existing):
        world.source(other).put(f"o{i}", email)
    world.sync(earlier)
    # Another import of the same shop already used `used` of this window's 500.
    if used:
        sibling = world.new_import(shop, account, tags=["sibling"])
        world.source(shop).fill(used, prefix=f"s{n}-")
        world.sync(sibling)
        world.source(shop).contacts.clear()
    for i, r in enumerate(records):
        email = {
            "new": f"new{i}@example.com",
            "existing": f"old{i}@example.com",
            "missing": "",
            "invalid": f"not-an-email-{i}",
            "refused": f"pending{i}@example.com",
        }[str(r["kind"])]
        world.source(shop).put(
            f"r{i:03d}",
            email,
            first_name="Changed" if r["renamed"] else "",
            opted_out=bool(r["opted_out"]),
            fields={"total_spent": str(r["spent"])} if r["spent"] else {},
            skip_reason="pending: not confirmed" if r["kind"] == "refused" else "",
        )
    auto_import = world.new_import(shop, account)
    before = (world.app.get_account(account).contact_count, auto_import.version)

    target = previewer(world).target(account, None, auto_import.id)
    preview, more = previewer(world).preview(target, sample_size=100)

    after = world.app.get_import(account, auto_import.id)
    assert (world.app.get_account(account).contact_count, after.version) == before
    report = world.sync(auto_import)
    assert not more and preview.records == len(records)
    assert {
        "added": preview.count(Outcome.ADDED),
        "updated": preview.count(Outcome.UPDATED),
        "unchanged": preview.count(Outcome.UNCHANGED),
        "missing": preview.count(Outcome.MISSING_EMAIL),
        "invalid": preview.count(Outcome.INVALID_EMAIL),
        "at_source": preview.count(Outcome.SKIPPED_AT_SOURCE),
        "blocked": preview.count(Outcome.BLOCKED),
        "deferred": preview.count(Outcome.DEFERRED),
        "fields": len(preview.fields_to_create),
    } == {
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "missing": report.skipped_missing_email,
        "invalid": report.skipped_invalid_email,
        "at_source": report.skipped_at_source,
        "blocked": report.blocked_by_limit,
        "deferred": report.deferred,
        "fields": report.fields_created,
    }
    assert [(s.external_id, s.reason) for s in report.skipped] == [
        (i, reason) for i, _, reason in preview.skipped
    ]
    assert [r.contact.external_id for r in preview.sample] == sorted(
        c for c in world.source(shop).contacts
    )


def test_a_new_import_is_previewed_as_created_without_being_created(world: World):
    world.account("fresh")
    world.source("fresh-shop").put("1", "Someone@Example.com", fields={"country": "FR"})
    world.source("fresh-shop").put("2", "")
    new = NewImport("shopify", "Fresh-Shop.myshopify.com", credentials=Credentials("token"))

    target = previewer(world).target("fresh", new, None)
    preview, _ = previewer(world).preview(target)

    assert target.external_account == "fresh-shop"  # normalized as on create
    assert (preview.count(Outcome.ADDED), preview.count(Outcome.MISSING_EMAIL)) == (1, 1)
    assert [f.title for f in preview.fields_to_create] == ["Shopify Country"]
    assert [r.outcome for r in preview.sample] == [Outcome.ADDED, Outcome.MISSING_EMAIL]
    assert world.app.get_account("fresh").contact_count == 0
    with pytest.raises(NotFound):
        world.app.get_import("fresh", target.id)


def test_a_preview_past_its_deadline_says_so_as_a_preview_not_as_a_sync(world: World):
    """A connector stops at the deadline with words for a sync ("the next sync resumes where
    this one stopped"): a preview resumes nothing, and says what helps."""
    world.account("late")
    world.source("late-shop").put("1", "someone@example.com")
    target = previewer(world).target(
        "late", NewImport("shopify", "late-shop", credentials=Credentials("token")), None
    )

    def too_late(page: int) -> None:
        raise DeadlinePassed()

    world.connectors.options["before_page"] = too_late
    try:
        with pytest.raises(DeadlinePassed) as raised:
            previewer(world).preview(target)
    finally:
        world.connectors.options.clear()

    assert str(raised.value) == (
        "the service did not answer within the call's deadline (at most 60 s): nothing was "
        "changed; retry, with a longer deadline if one was set"
    )

"""Syncs over gRPC: TriggerSync, ListSyncs, contacts and fields, against scripted sources served
to a real server process (tests/scripted_server.py); crash safety with SIGKILL; replicas."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from autoimport.v1 import accounts_pb2 as apb
from autoimport.v1 import contacts_pb2 as cpb
from autoimport.v1 import contacts_pb2_grpc, fields_pb2_grpc
from autoimport.v1 import fields_pb2 as fpb
from autoimport.v1 import imports_pb2 as pb
from tests.conftest import STORES
from tests.scripted import T0
from tests.scripted_server import write_source
from tests.support import Client, ServerProcess, store_env, wait_for
from tests.test_api_imports import error_of, violations

SCRIPTED = "tests.scripted_server"


def contacts_of(count: int, prefix: str = "c", **values: Any) -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"{prefix}{n:05d}",
            "email": f"{prefix}{n:05d}@example.com",
            "updated_at": (T0 + timedelta(seconds=n)).isoformat(),
            **values,
        }
        for n in range(count)
    ]


class SyncWorld:
    def __init__(self, server: ServerProcess, sources: Path):
        self.server = server
        self.sources = sources
        self.admin = server.client(server.admin_token)
        self.contacts = contacts_pb2_grpc.ContactServiceStub(self.admin.channel)
        self.fields = fields_pb2_grpc.FieldServiceStub(self.admin.channel)

    def account(self, limit: int = 100_000) -> str:
        account_id = f"acct-{uuid.uuid4().hex[:8]}"
        self.admin.accounts.UpsertAccount(
            apb.UpsertAccountRequest(
                account=apb.Account(account_id=account_id, plan="p", contact_limit=limit)
            )
        )
        return account_id

    def new_import(
        self, account_id: str, contacts: list[dict[str, Any]], **options: Any
    ) -> pb.AutoImport:
        store = f"store-{uuid.uuid4().hex[:8]}"
        write_source(self.sources, store, contacts, **options)
        return self.admin.imports.CreateImport(
            pb.CreateImportRequest(
                account_id=account_id,
                auto_import=pb.AutoImport(
                    service="shopify",
                    external_account=store,
                    credentials=pb.Credentials(access_token="t"),
                    tags=["shop"],
                ),
            )
        )

    def sync(self, auto_import: pb.AutoImport, client: Client | None = None) -> pb.SyncReport:
        return (client or self.admin).imports.TriggerSync(
            pb.TriggerSyncRequest(name=auto_import.name), timeout=120
        )

    def all_contacts(self, account_id: str) -> list[cpb.Contact]:
        found, token = [], ""
        while True:
            page = self.contacts.ListContacts(
                cpb.ListContactsRequest(account_id=account_id, page_size=1000, page_token=token)
            )
            found += page.contacts
            token = page.next_page_token
            if not token:
                return found


@pytest.fixture(scope="module", params=STORES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SyncWorld]:
    folder = tmp_path_factory.mktemp(request.param)
    sources = folder / "sources"
    sources.mkdir()
    with (
        store_env(request.param, folder) as env,
        ServerProcess({**env, "AUTOIMPORT_TEST_SOURCES": str(sources)}, SCRIPTED) as server,
    ):
        yield SyncWorld(server, sources)


def test_trigger_sync_imports_the_contacts_and_reports_it(world: SyncWorld):
    account = world.account()
    contacts = contacts_of(120, fields={"total_spent": "12.50"})
    contacts[3]["email"] = "broken"
    auto_import = world.new_import(account, contacts)

    report = world.sync(auto_import)

    assert report.outcome == pb.SyncReport.COMPLETED
    assert (report.fetched, report.added, report.skipped_invalid_email, report.fields_created) == (
        120,
        119,
        1,
        1,
    )
    assert [(s.external_id, s.reason) for s in report.skipped] == [("c00003", "invalid email")]
    assert (
        report.import_name == auto_import.name
        and report.end_time.ToDatetime() >= report.start_time.ToDatetime()
    )
    fetched = world.admin.imports.GetImport(pb.GetImportRequest(name=auto_import.name))
    assert fetched.last_sync == report
    assert fetched.etag == auto_import.etag  # sync progress leaves the etag alone
    syncs = world.admin.imports.ListSyncs(pb.ListSyncsRequest(name=auto_import.name))
    assert list(syncs.syncs) == [report]
    listed = world.contacts.ListContacts(cpb.ListContactsRequest(account_id=account, page_size=5))
    assert listed.total_size == 119 and len(listed.contacts) == 5 and listed.next_page_token
    contact = world.contacts.GetContact(
        cpb.GetContactRequest(account_id=account, email="C00007@Example.com")
    )
    assert contact.email == "c00007@example.com"
    assert dict(contact.fields) == {"%SHOPIFY_TOTAL_SPENT%": "12.50"}
    assert list(contact.tags) == ["shop"] and list(contact.source_imports) == [auto_import.name]
    assert contact.status == cpb.Contact.ACTIVE
    fields = world.fields.ListFields(fpb.ListFieldsRequest(account_id=account))
    assert [(f.title, f.personalization_tag, f.service) for f in fields.fields] == [
        ("Shopify Total Spent", "%SHOPIFY_TOTAL_SPENT%", "shopify")
    ]
    assert (
        world.admin.accounts.GetAccount(apb.GetAccountRequest(account_id=account)).contact_count
        == 119
    )


def test_unsubscribed_contacts_stay_unsubscribed_through_syncs(world: SyncWorld):
    account = world.account()
    contacts = contacts_of(3)
    auto_import = world.new_import(account, contacts)
    world.sync(auto_import)

    unsubscribed = world.contacts.UnsubscribeContact(
        cpb.UnsubscribeContactRequest(account_id=account, email="c00001@example.com")
    )
    contacts[1].update(first_name="Renamed", updated_at=(T0 + timedelta(days=1)).isoformat())
    write_source(world.sources, auto_import.external_account, contacts)
    report = world.sync(auto_import)

    assert unsubscribed.status == cpb.Contact.UNSUBSCRIBED
    assert report.updated == 1
    after = world.contacts.GetContact(
        cpb.GetContactRequest(account_id=account, email="c00001@example.com")
    )
    assert (after.status, after.first_name) == (cpb.Contact.UNSUBSCRIBED, "Renamed")


def test_sync_of_a_paused_import_fails_its_precondition(world: SyncWorld):
    account = world.account()
    auto_import = world.new_import(account, contacts_of(1))
    world.admin.imports.PauseImport(pb.PauseImportRequest(name=auto_import.name))

    error = error_of(world.sync, auto_import)

    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "resume" in error.details()


def test_contacts_and_syncs_of_another_account_are_out_of_reach(world: SyncWorld):
    account, other = world.account(), world.account()
    auto_import = world.new_import(account, contacts_of(2))
    world.sync(auto_import)
    key = world.admin.accounts.CreateApiKey(apb.CreateApiKeyRequest(account_id=other)).key

    with world.server.client(key) as intruder:
        contacts = contacts_pb2_grpc.ContactServiceStub(intruder.channel)
        fields = fields_pb2_grpc.FieldServiceStub(intruder.channel)
        denied = [
            error_of(world.sync, auto_import, intruder),
            error_of(intruder.imports.ListSyncs, pb.ListSyncsRequest(name=auto_import.name)),
            error_of(contacts.ListContacts, cpb.ListContactsRequest(account_id=account)),
            error_of(
                contacts.GetContact,
                cpb.GetContactRequest(account_id=account, email="c00000@example.com"),
            ),
            error_of(
                contacts.UnsubscribeContact,
                cpb.UnsubscribeContactRequest(account_id=account, email="c00000@example.com"),
            ),
            error_of(fields.ListFields, fpb.ListFieldsRequest(account_id=account)),
        ]
        own = contacts.ListContacts(cpb.ListContactsRequest(account_id=other))

    assert all(e.code() is grpc.StatusCode.PERMISSION_DENIED for e in denied)
    assert own.total_size == 0


def test_contact_requests_with_a_bad_email_are_invalid(world: SyncWorld):
    account = world.account()

    error = error_of(
        world.contacts.GetContact, cpb.GetContactRequest(account_id=account, email="nope")
    )
    missing = error_of(
        world.contacts.GetContact, cpb.GetContactRequest(account_id=account, email="a@b.co")
    )

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and "email" in violations(error)
    assert missing.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("store", STORES)
def test_a_sync_killed_midway_loses_nothing_and_doubles_nothing_after_a_restart(
    store: str, tmp_path: Path
):
    _kill_during_sync(tmp_path, store)


def _kill_during_sync(folder: Path, store: str) -> None:
    sources = folder / "sources"
    sources.mkdir(parents=True)
    with store_env(store, folder) as env:
        env = {**env, "AUTOIMPORT_TEST_SOURCES": str(sources)}
        server = ServerProcess(env, SCRIPTED).start()
        world = SyncWorld(server, sources)
        account = world.account()
        # A gate before the fourth page: three pages (150 contacts) are saved when it is killed.
        auto_import = world.new_import(account, contacts_of(450), page_size=50, hold_at_page=3)
        held = sources / f"{auto_import.external_account}.held"
        outcome: list[object] = []
        syncing = threading.Thread(target=lambda: outcome.append(error_of(world.sync, auto_import)))
        syncing.start()
        wait_for(held.exists, bool, timeout=60)
        server.kill()  # SIGKILL, mid-sync
        syncing.join()
        world.admin.channel.close()

        with ServerProcess(env, SCRIPTED) as restarted:
            world = SyncWorld(restarted, sources)
            write_source(sources, auto_import.external_account, contacts_of(450), page_size=50)
            report = world.sync(auto_import)
            syncs = world.admin.imports.ListSyncs(pb.ListSyncsRequest(name=auto_import.name)).syncs
            everyone = world.all_contacts(account)
            world.admin.channel.close()

    assert outcome[0].code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert (report.outcome, report.added) == (pb.SyncReport.COMPLETED, 300)
    assert [s.outcome for s in syncs] == [pb.SyncReport.COMPLETED, pb.SyncReport.FAILED]
    assert "interrupted" in syncs[1].error
    assert syncs[1].added == 150  # the killed sync's saved pages count
    emails = sorted(c.email for c in everyone)
    assert emails == sorted(f"c{n:05d}@example.com" for n in range(450))


@pytest.mark.postgres
def test_two_replicas_syncing_four_imports_into_one_account_keep_the_limit(tmp_path: Path):
    from tests.conftest import require_postgres

    require_postgres()
    sources = tmp_path / "sources"
    sources.mkdir()
    with store_env("postgres", tmp_path) as env:
        env = {**env, "AUTOIMPORT_TEST_SOURCES": str(sources)}
        second_env = {**env, "AUTOIMPORT_DATA_DIR": str(tmp_path / "second")}
        with ServerProcess(env, SCRIPTED) as one, ServerProcess(second_env, SCRIPTED) as two:
            world_one, world_two = SyncWorld(one, sources), SyncWorld(two, sources)
            account = world_one.account(limit=600)
            imports = [
                world_one.new_import(
                    account,
                    contacts_of(250, prefix=f"s{n}-") + contacts_of(100, prefix="shared"),
                    page_size=40,
                )
                for n in range(4)
            ]
            errors: list[BaseException] = []

            def run(world: SyncWorld, auto_import: pb.AutoImport) -> None:
                try:
                    world.sync(auto_import)
                except BaseException as e:
                    errors.append(e)

            threads = [
                threading.Thread(target=run, args=(world_one if n % 2 else world_two, i))
                for n, i in enumerate(imports)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            everyone = world_one.all_contacts(account)
            count = world_two.admin.accounts.GetAccount(
                apb.GetAccountRequest(account_id=account)
            ).contact_count
            for w in (world_one, world_two):
                w.admin.channel.close()

    assert not errors
    assert len(everyone) == 600 == len({c.email for c in everyone}) == count


def test_list_syncs_pages_through_every_sync_newest_first(world: SyncWorld):
    account = world.account()
    contacts = contacts_of(3)
    auto_import = world.new_import(account, contacts)
    reports = []
    for n in range(3):
        contacts[0].update(updated_at=(T0 + timedelta(days=n + 1)).isoformat(), first_name=f"v{n}")
        write_source(world.sources, auto_import.external_account, contacts)
        reports.append(world.sync(auto_import))

    first = world.admin.imports.ListSyncs(pb.ListSyncsRequest(name=auto_import.name, page_size=2))
    second = world.admin.imports.ListSyncs(
        pb.ListSyncsRequest(name=auto_import.name, page_size=2, page_token=first.next_page_token)
    )

    assert [s.sync_id for s in [*first.syncs, *second.syncs]] == [
        r.sync_id for r in reversed(reports)
    ]
    assert second.next_page_token == ""
    assert [(r.added, r.updated) for r in reports] == [(3, 0), (0, 1), (0, 1)]


@pytest.mark.postgres
def test_a_replica_stopped_mid_sync_loses_the_import_to_another_and_is_fenced_when_it_wakes(
    tmp_path: Path,
):
    """SIGSTOP: the process keeps its sessions (its kernel answers TCP keepalives), so only the
    lease timeout frees its sync lease. Another replica syncs the import within that bound; the
    stopped one, woken, learns it lost the lease and its leftover page is refused."""
    import os
    import signal
    import time

    from tests.support import wait_for

    lease_timeout = 3.0
    sources = tmp_path / "sources"
    sources.mkdir()
    with store_env("postgres", tmp_path) as env:
        env = {
            **env,
            "AUTOIMPORT_TEST_SOURCES": str(sources),
            "AUTOIMPORT_LEASE_TIMEOUT": str(lease_timeout),
        }
        second_env = {**env, "AUTOIMPORT_DATA_DIR": str(tmp_path / "second")}
        with ServerProcess(env, SCRIPTED) as one, ServerProcess(second_env, SCRIPTED) as two:
            assert one.process is not None
            world_one, world_two = SyncWorld(one, sources), SyncWorld(two, sources)
            account = world_one.account()
            contacts = contacts_of(300)
            auto_import = world_one.new_import(account, contacts, page_size=50, hold_at_page=2)
            gate = sources / f"{auto_import.external_account}.held"
            woken: list[object] = []

            def sync_on_one() -> None:
                try:
                    woken.append(world_one.sync(auto_import))
                except grpc.RpcError as e:
                    woken.append(e)

            first_sync = threading.Thread(target=sync_on_one)
            first_sync.start()
            wait_for(gate.exists, bool, timeout=60)  # two pages saved, the third being read
            assert gate.read_text() == str(one.process.pid)
            running = world_two.sync(auto_import)  # one holds the lease: its running sync
            os.kill(one.process.pid, signal.SIGSTOP)
            stopped_at = time.time()
            try:
                # Opens the gate: for the replica that takes over, and for the stopped one.
                write_source(sources, auto_import.external_account, contacts, page_size=50)
                taken_over = wait_for(
                    lambda: world_two.sync(auto_import),
                    lambda report: report.sync_id != running.sync_id,
                    timeout=60,
                )
            finally:
                os.kill(one.process.pid, signal.SIGCONT)
            first_sync.join(timeout=120)
            lost = f"lost the lease sync/{auto_import.name.rpartition('/')[2]}"
            wait_for(lambda: "".join(one.output), lambda output: lost in output)
            history = list(
                world_two.admin.imports.GetImportHistory(
                    pb.GetImportHistoryRequest(name=auto_import.name)
                )
            )
            syncs = world_two.admin.imports.ListSyncs(
                pb.ListSyncsRequest(name=auto_import.name)
            ).syncs
            everyone = world_two.all_contacts(account)
            count = world_two.admin.accounts.GetAccount(
                apb.GetAccountRequest(account_id=account)
            ).contact_count
            for world in (world_one, world_two):
                world.admin.channel.close()

    assert running.outcome == pb.SyncReport.RUNNING
    assert taken_over.outcome == pb.SyncReport.COMPLETED
    took = taken_over.start_time.ToNanoseconds() / 1e9 - stopped_at
    assert took <= lease_timeout + 3, f"another replica took the import over after {took:.1f} s"
    assert not first_sync.is_alive()
    # The woken replica's call ends without completing its own sync.
    assert not (
        isinstance(woken[0], pb.SyncReport)
        and woken[0].sync_id == running.sync_id
        and woken[0].outcome == pb.SyncReport.COMPLETED
    ), woken[0]
    assert [s.sync_id for s in syncs] == [taken_over.sync_id, running.sync_id]
    assert syncs[1].outcome == pb.SyncReport.FAILED and "interrupted" in syncs[1].error
    assert (syncs[1].added, syncs[0].added) == (100, 200)  # nothing lost, nothing doubled
    emails = sorted(c.email for c in everyone)
    assert emails == sorted(c["email"] for c in contacts) and count == 300
    # Nothing of the woken sync after the takeover: the completion is the import's last event.
    types = [e.type for e in history]
    assert types[-1] == "SyncCompleted" and types.count("ContactAdded") == 300
    assert types.count("SyncStarted") == 2 and types.count("SyncFailed") == 1


# -- check and preview -----------------------------------------------------------------------


def test_a_preview_over_grpc_tells_what_the_next_sync_does_and_saves_nothing(world: SyncWorld):
    account = world.account(limit=100_000)
    contacts = contacts_of(130, fields={"total_spent": "9.99"})
    contacts[0]["email"] = ""
    contacts[1]["skip_reason"] = "pending: not confirmed"
    auto_import = world.new_import(account, contacts, page_size=100)

    preview = world.admin.imports.PreviewImport(
        pb.PreviewImportRequest(name=auto_import.name, sample_size=3)
    )

    assert (preview.records, preview.more) == (100, True)
    assert (preview.would_add, preview.skipped_missing_email, preview.skipped_at_source) == (
        98,
        1,
        1,
    )
    assert [(s.external_id, s.reason) for s in preview.skipped] == [
        ("c00000", "missing email"),
        ("c00001", "pending: not confirmed"),
    ]
    assert [(f.title, f.personalization_tag) for f in preview.fields_to_create] == [
        ("Shopify Total Spent", "%SHOPIFY_TOTAL_SPENT%")
    ]
    assert [r.outcome for r in preview.sample] == [
        "missing email",
        "skipped at the source",
        "added",
    ]
    assert preview.sample[2].fields == {"%SHOPIFY_TOTAL_SPENT%": "9.99"}
    assert world.all_contacts(account) == []
    fetched = world.admin.imports.GetImport(pb.GetImportRequest(name=auto_import.name))
    assert not fetched.HasField("last_sync") and fetched.etag == auto_import.etag
    history = list(
        world.admin.imports.GetImportHistory(pb.GetImportHistoryRequest(name=auto_import.name))
    )
    assert [e.type for e in history] == ["Created"]

    report = world.sync(auto_import)
    assert (report.added, report.skipped_missing_email, report.skipped_at_source) == (128, 1, 1)


def test_check_connection_of_a_new_or_an_existing_import(world: SyncWorld):
    account = world.account()
    auto_import = world.new_import(account, contacts_of(1))
    store = auto_import.external_account

    existing = world.admin.imports.CheckConnection(pb.CheckConnectionRequest(name=auto_import.name))
    new = world.admin.imports.CheckConnection(
        pb.CheckConnectionRequest(
            account_id=account,
            auto_import=pb.AutoImport(
                service="shopify",
                external_account=f"{store.upper()}.myshopify.com",
                credentials=pb.Credentials(access_token="t"),
            ),
        )
    )

    for checked in (existing, new):
        assert checked.ok
        assert [f.check for f in checked.findings] == [
            "credentials",
            "external account",
            "scopes",
            "quota",
        ]
        assert checked.findings[1].detail == f"scripted: {store}"  # the normalized account
    write_source(world.sources, store, contacts_of(1), revoked=True)
    refused = world.admin.imports.CheckConnection(pb.CheckConnectionRequest(name=auto_import.name))
    assert not refused.ok
    assert [f.ok for f in refused.findings] == [False, False, False, False]
    assert "revoked" in refused.findings[0].detail
    # A preview cannot read with refused credentials: the connector's words, as a precondition.
    error = error_of(
        world.admin.imports.PreviewImport, pb.PreviewImportRequest(name=auto_import.name)
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "revoked the grant" in error.details()
    # A check is an answer: the import is as it was.
    fetched = world.admin.imports.GetImport(pb.GetImportRequest(name=auto_import.name))
    assert fetched.state == pb.AutoImport.ACTIVE and fetched.etag == auto_import.etag


@pytest.mark.parametrize("method", ["CheckConnection", "PreviewImport"])
def test_check_and_preview_refuse_bad_requests_with_the_field_to_fix(world: SyncWorld, method: str):
    account = world.account()
    auto_import = world.new_import(account, contacts_of(1))
    call = getattr(world.admin.imports, method)
    request = getattr(pb, f"{method}Request")

    def refused(**fields: Any) -> grpc.RpcError:
        return error_of(call, request(**fields))

    error = refused(
        account_id=account,
        auto_import=pb.AutoImport(service="gmail", external_account="x"),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "auto_import.service" in violations(error)
    error = refused(account_id=account)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "auto_import" in violations(error)
    error = refused(
        name=auto_import.name, auto_import=pb.AutoImport(service="shopify", external_account="s")
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = auto_import.name.rsplit("/", 1)[0] + f"/{uuid.uuid4()}"
    assert refused(name=missing).code() == grpc.StatusCode.NOT_FOUND
    other = world.account()
    key = world.admin.accounts.CreateApiKey(apb.CreateApiKeyRequest(account_id=other)).key
    with world.server.client(key) as foreign:
        with pytest.raises(grpc.RpcError) as raised:
            getattr(foreign.imports, method)(request(name=auto_import.name))
        assert raised.value.code() in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)
        with pytest.raises(grpc.RpcError) as raised:
            getattr(foreign.imports, method)(
                request(
                    account_id=account,
                    auto_import=pb.AutoImport(
                        service="shopify",
                        external_account="s",
                        credentials=pb.Credentials(access_token="t"),
                    ),
                )
            )
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_control_characters_from_a_source_are_taken_out_and_stall_nothing(world: SyncWorld):
    """A source's record may hold NUL (PostgreSQL's text cannot: one stored stopped the read
    model for every account), ESC or a right-to-left override (they drive a terminal or flip
    what a person reads). As in a CSV file they are taken out of names and field values; an
    email holding one is invalid and skipped; an external id holding one (the source's key,
    kept as the source sent it) stalls nothing either."""
    account = world.account()
    contacts = contacts_of(4, fields={"total_spent": "1\x002"})
    contacts[0]["first_name"] = "Ann\x00"
    contacts[1]["last_name"] = "\x1b[31mRed\u202e"
    contacts[2]["email"] = "c\x0000002@example.com"
    contacts[3]["external_id"] = "id\x00three"
    auto_import = world.new_import(account, contacts)

    report = world.sync(auto_import)

    assert (report.outcome, report.added, report.skipped_invalid_email) == (
        pb.SyncReport.COMPLETED,
        3,
        1,
    )
    held = {c.email: c for c in world.all_contacts(account)}
    assert held["c00000@example.com"].first_name == "Ann"
    assert held["c00001@example.com"].last_name == "[31mRed"
    assert dict(held["c00003@example.com"].fields) == {"%SHOPIFY_TOTAL_SPENT%": "12"}
    syncs = world.admin.imports.ListSyncs(pb.ListSyncsRequest(name=auto_import.name))
    assert list(syncs.syncs) == [report]
    other = world.account()  # the read model goes on for every account
    assert world.all_contacts(other) == []


def test_a_failure_quoting_control_characters_from_the_service_stalls_nothing(world: SyncWorld):
    """A failure's reason quotes the service's words (an error body): NUL in them stopped the
    read model's projection on PostgreSQL, for every account; ESC would drive the terminal of
    whoever reads the reason. They are taken out, the rest of the words kept."""
    account = world.account()
    auto_import = world.new_import(account, contacts_of(2), revoked="gone\x00 \x1b[2Jaway\u202e")

    report = world.sync(auto_import)

    assert report.outcome == pb.SyncReport.FAILED
    assert report.error == "gone [2Jaway: reconnect the account"
    fetched = world.admin.imports.GetImport(pb.GetImportRequest(name=auto_import.name))
    assert (fetched.state, fetched.state_reason) == (pb.AutoImport.NEEDS_REAUTH, report.error)
    listed = world.admin.imports.ListImports(pb.ListImportsRequest(account_id=account))
    assert [i.state_reason for i in listed.auto_imports] == [report.error]
    assert world.all_contacts(world.account()) == []  # the read model goes on for every account

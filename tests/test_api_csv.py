"""ContactService.ImportCsv end to end: a real server process, a client stream of chunks, both
stores. Every row-level case in one small file, a 100,000-row file streamed from a generator,
malformed files, and who may import where."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
import pytest

from autoimport.v1 import accounts_pb2 as apb
from autoimport.v1 import contacts_pb2 as cpb
from autoimport.v1 import contacts_pb2_grpc, fields_pb2_grpc
from autoimport.v1 import fields_pb2 as fpb
from tests.support import Client, ServerProcess
from tests.test_api_imports import error_of, violations

CHUNK = 64 * 1024
KeyOf = Callable[[str], Client]


def upload(
    client: Client,
    account_id: str,
    chunks: Iterable[bytes],
    *,
    timeout: float = 60,
    **options: Any,
) -> cpb.CsvImportReport:
    def requests() -> Iterator[cpb.ImportCsvRequest]:
        yield cpb.ImportCsvRequest(options=cpb.CsvImportOptions(account_id=account_id, **options))
        for chunk in chunks:
            yield cpb.ImportCsvRequest(chunk=chunk)

    stub = contacts_pb2_grpc.ContactServiceStub(client.channel)
    return stub.ImportCsv(requests(), timeout=timeout)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def new_account(admin: Client, limit: int) -> str:
    account_id = f"csv-{uuid.uuid4().hex[:10]}"
    admin.accounts.UpsertAccount(
        apb.UpsertAccountRequest(
            account=apb.Account(account_id=account_id, plan="bulk", contact_limit=limit)
        )
    )
    return account_id


@pytest.fixture
def key_of(server: ServerProcess, admin: Client) -> Iterator[Callable[[str], Client]]:
    """key_of(account_id) -> a client holding an API key of that account."""
    clients: list[Client] = []

    def client_of(account_id: str) -> Client:
        key = admin.accounts.CreateApiKey(apb.CreateApiKeyRequest(account_id=account_id)).key
        clients.append(server.client(key))
        return clients[-1]

    yield client_of
    for client in clients:
        client.channel.close()


def caught_up(call: Callable[..., Any], *args: Any, deadline: float = 120, **kwargs: Any) -> Any:
    """The call's answer once the read model has caught up (UNAVAILABLE until then)."""
    end = time.monotonic() + deadline
    while True:
        try:
            return call(*args, **kwargs)
        except grpc.RpcError as e:
            if e.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > end:
                raise


EVERY_CASE = (
    "\ufeffE-mail;First Name;Last_Name;PHONE;Company\n"
    'new1@example.com;"New ""One""";"Multi\nLine";+1 555;Acme\n'  # row 2: added
    ";No email;;;\n"  # row 3
    "not-an-email;Bad;;;\n"  # row 4
    "Old@Example.com;Older;;;\n"  # row 5: updated
    "same@example.com;Same;;;\n"  # row 6: unchanged
    "gone@example.com;Gone again;;;\n"  # row 7: updated, still unsubscribed
    "NEW1@example.com;Dup;;;Other\n"  # row 8: the first row wins
    "\n"  # row 9: blank
    "new2@example.com;;;;\n"  # row 10: added, the account is full
    "new3@example.com;;;;\n"  # row 11: blocked by the limit
).encode()


def test_a_small_file_with_every_case(admin: Client, key_of: KeyOf):
    account_id = new_account(admin, limit=5)
    client = key_of(account_id)
    contacts = contacts_pb2_grpc.ContactServiceStub(client.channel)
    first = upload(
        client,
        account_id,
        [b"email,first name\nold@example.com,Old\nsame@example.com,Same\ngone@example.com,Gone\n"],
        list_ids=["news"],
        tags=["spring"],
    )
    contacts.UnsubscribeContact(
        cpb.UnsubscribeContactRequest(account_id=account_id, email="gone@example.com")
    )

    report = upload(client, account_id, chunked(EVERY_CASE, 7))

    assert (first.rows, first.added) == (3, 3)
    assert (report.rows, report.added, report.updated, report.unchanged) == (9, 2, 2, 1)
    assert (report.duplicates_in_file, report.blocked_by_limit, report.fields_created) == (1, 1, 1)
    assert (report.skipped_missing_email, report.skipped_invalid_email) == (1, 1)
    assert [(e.row, e.reason) for e in report.errors] == [
        (3, "missing email"),
        (4, "invalid email 'not-an-email'"),
        (8, "duplicate: NEW1@example.com is on an earlier row (the first one wins)"),
        (11, "contact limit reached: new3@example.com was not added"),
    ]
    new1 = caught_up(
        contacts.GetContact, cpb.GetContactRequest(account_id=account_id, email="new1@example.com")
    )
    assert (new1.first_name, new1.last_name, new1.phone) == ('New "One"', "Multi\nLine", "+1 555")
    assert (dict(new1.fields), list(new1.source_imports)) == ({"%COMPANY%": "Acme"}, ["csv"])
    assert new1.status == cpb.Contact.ACTIVE
    gone = contacts.GetContact(
        cpb.GetContactRequest(account_id=account_id, email="gone@example.com")
    )
    assert (gone.status, gone.first_name) == (cpb.Contact.UNSUBSCRIBED, "Gone again")
    old = contacts.GetContact(cpb.GetContactRequest(account_id=account_id, email="old@example.com"))
    assert (old.first_name, list(old.list_ids), list(old.tags)) == ("Older", ["news"], ["spring"])
    fields = fields_pb2_grpc.FieldServiceStub(client.channel).ListFields(
        fpb.ListFieldsRequest(account_id=account_id, service="csv")
    )
    assert [(f.title, f.personalization_tag) for f in fields.fields] == [("Company", "%COMPANY%")]
    account = client.accounts.GetAccount(apb.GetAccountRequest(account_id=account_id))
    assert account.contact_count == 5


def test_a_100000_row_file_streamed_in_64_kib_chunks(admin: Client, key_of: KeyOf):
    account_id = new_account(admin, limit=200_000)
    client = key_of(account_id)
    rows = 100_000

    def generated() -> Iterator[bytes]:
        """The file, made as it is sent: never whole in memory here either."""
        buffer = bytearray(b"email,first name,last name,City\n")
        for n in range(rows):
            buffer += f"person{n:06d}@example.com,First{n},Last{n},City {n % 50}\n".encode()
            if len(buffer) >= CHUNK:
                yield bytes(buffer[:CHUNK])
                del buffer[:CHUNK]
        yield bytes(buffer)

    report = upload(client, account_id, generated(), timeout=900, tags=["bulk"])

    assert (report.rows, report.added, report.fields_created, len(report.errors)) == (
        rows,
        rows,
        1,
        0,
    )
    account = client.accounts.GetAccount(apb.GetAccountRequest(account_id=account_id))
    assert account.contact_count == rows
    contacts = contacts_pb2_grpc.ContactServiceStub(client.channel)
    page = caught_up(
        contacts.ListContacts,
        cpb.ListContactsRequest(account_id=account_id, page_size=3),
        deadline=300,
    )
    assert page.total_size == rows
    assert [c.email for c in page.contacts] == [f"person{n:06d}@example.com" for n in range(3)]
    assert dict(page.contacts[1].fields) == {"%CITY%": "City 1"}


def test_a_malformed_file_is_invalid_argument_naming_the_row(admin: Client, key_of: KeyOf):
    account_id = new_account(admin, limit=100)
    client = key_of(account_id)
    data = b'email,name\na@example.com,A\nb@example.com,"B\n'

    error = error_of(upload, client, account_id, [data])

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "row 3" in error.details() and "no row was applied" in error.details()
    assert "row 3: is not valid CSV" in violations(error)["chunk"]


@pytest.mark.parametrize(
    ("data", "row"),
    [(b"", 1), (b"name\nJo\n", 1), (b"email\na@example.com,x\n", 2), (b"email\n\xc3\x28\n", 2)],
)
def test_other_malformed_files(admin: Client, key_of: KeyOf, data: bytes, row: int):
    account_id = new_account(admin, limit=100)

    error = error_of(upload, key_of(account_id), account_id, [data])

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error)["chunk"].startswith(f"row {row}: ")


def test_another_account_s_key_is_permission_denied(admin: Client, account_client: Client):
    other = new_account(admin, limit=100)

    error = error_of(upload, account_client, other, [b"email\na@example.com\n"])

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


def test_options_must_come_first(account_client: Client, account: str):
    stub = contacts_pb2_grpc.ContactServiceStub(account_client.channel)
    options = cpb.ImportCsvRequest(options=cpb.CsvImportOptions(account_id=account))
    chunk = cpb.ImportCsvRequest(chunk=b"email\na@example.com\n")

    not_first = error_of(stub.ImportCsv, iter([chunk, options]))
    missing = error_of(stub.ImportCsv, iter([]))
    twice = error_of(stub.ImportCsv, iter([options, chunk, options]))
    no_account = error_of(
        stub.ImportCsv, iter([cpb.ImportCsvRequest(options=cpb.CsvImportOptions()), chunk])
    )

    for error in (not_first, missing, twice):
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "options" in violations(error)
    assert "options.account_id" in violations(no_account)


def test_an_unknown_account_is_not_found(admin: Client):
    error = error_of(upload, admin, "no-such-account", [b"email\na@example.com\n"])

    assert error.code() is grpc.StatusCode.NOT_FOUND


def test_a_retried_upload_with_the_same_request_id_returns_the_same_report(
    account_client: Client, account: str
):
    request_id = str(uuid.uuid4())
    data = [b"email\na@example.com\nb@example.com\n"]

    first = upload(account_client, account, data, request_id=request_id)
    again = upload(account_client, account, data, request_id=request_id)
    bad_id = error_of(upload, account_client, account, data, request_id="not-a-uuid")

    assert first.added == 2 and again == first
    assert "options.request_id" in violations(bad_id)


def contact_count(client: Client, account_id: str) -> int:
    return client.accounts.GetAccount(apb.GetAccountRequest(account_id=account_id)).contact_count


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (b",".join(b"c%d" % n for n in range(100_000)), "at most 200 are allowed"),
        (b"x" * 131_073, "a field longer than 131,072 characters"),
        (b",".join(b"y" * 1000 for _ in range(150)), "over 255 characters"),
    ],
)
def test_a_wide_header_is_invalid_argument_naming_the_limit(
    admin: Client, key_of: KeyOf, header: bytes, words: str
):
    account_id = new_account(admin, limit=100)
    client = key_of(account_id)

    data = b"email," + header + b"\na@example.com\n"

    error = error_of(upload, client, account_id, chunked(data, CHUNK))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error)["chunk"].startswith("row 1: ")
    assert words in violations(error)["chunk"]
    assert contact_count(client, account_id) == 0


def test_a_10_mb_field_in_a_data_row_is_invalid_argument_naming_the_limit(
    admin: Client, key_of: KeyOf
):
    account_id = new_account(admin, limit=100)
    client = key_of(account_id)
    data = b'email,note\na@example.com,"' + b"0123456789\n" * 1_000_000 + b'"\n'

    error = error_of(upload, client, account_id, chunked(data, CHUNK))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error)["chunk"] == (
        "row 2: has a field longer than 131,072 characters; no row was applied"
    )


def test_options_again_after_a_saved_batch_say_how_many_rows_were_applied(
    admin: Client, key_of: KeyOf
):
    account_id = new_account(admin, limit=1000)
    client = key_of(account_id)
    request_id = str(uuid.uuid4())
    rows = [b"email\n", *(b"u%d@example.com\n" % n for n in range(600))]
    options = cpb.CsvImportOptions(account_id=account_id, request_id=request_id)
    stub = contacts_pb2_grpc.ContactServiceStub(client.channel)

    def requests(again_after: int) -> Iterator[cpb.ImportCsvRequest]:
        yield cpb.ImportCsvRequest(options=options)
        for n, row in enumerate(rows):
            yield cpb.ImportCsvRequest(chunk=row)
            if n == again_after:
                yield cpb.ImportCsvRequest(options=options)

    error = error_of(stub.ImportCsv, requests(again_after=550), timeout=60)

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error)["options"] == (
        "must be sent once, in the first message; "
        "the 500 rows up to row 501 were applied, none after"
    )
    assert contact_count(client, account_id) == 500
    # What was applied is real, and a retry without the mistake carries on after it.
    report = stub.ImportCsv(requests(again_after=-1), timeout=60)
    assert (report.rows, report.added) == (600, 600)
    assert contact_count(client, account_id) == 600


@pytest.mark.parametrize(
    "data",
    [b'email,name\na@x.com,"Smith', b'email,name\nb@x.com,ok\na@x.com,"Smith', b'email\n"a@x.com'],
)
def test_a_stream_that_ends_inside_a_quoted_field_applies_no_row_of_it(
    admin: Client, key_of: KeyOf, data: bytes
):
    account_id = new_account(admin, limit=100)
    client = key_of(account_id)

    error = error_of(upload, client, account_id, chunked(data, 3))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "a quoted field is not closed before the end of the file" in violations(error)["chunk"]
    assert contact_count(client, account_id) == 0


def test_the_report_flags_formulas_and_counts_cleaned_values(admin: Client, key_of: KeyOf):
    account_id = new_account(admin, limit=100)
    client = key_of(account_id)
    data = (
        b"email,first name,phone\n"
        b'a@example.com,=HYPERLINK("http://evil.example"),+1 555\n'
        b"b@example.com,Bob\x1b[31m,\n"
        b"c@example.com,Cy,+1+1\n"
    )

    report = upload(client, account_id, [data])

    assert (report.rows_with_formulas, list(report.formula_rows)) == (2, [2, 4])
    assert report.cells_cleaned == 1
    contacts = contacts_pb2_grpc.ContactServiceStub(client.channel)
    a = caught_up(
        contacts.GetContact, cpb.GetContactRequest(account_id=account_id, email="a@example.com")
    )
    assert a.first_name == '=HYPERLINK("http://evil.example")'

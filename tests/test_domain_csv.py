"""Unit tests of domain.csv_file (reading a CSV file of contacts as a stream of chunks) and of
domain.csv_import's first-row-wins rule across uploads applied batch by batch."""

from __future__ import annotations

import csv
import random
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.account import Account
from domain.contact import Contact, normalize_email
from domain.csv_file import (
    MAX_FIELD,
    MAX_LINE,
    CsvColumns,
    MalformedCsv,
    contact_without_controls,
    holds_formula,
    read_contacts,
    read_records,
)
from domain.csv_import import CsvImport, CsvOptions, apply_batch
from domain.sources import personalization_tag, personalization_tag_of
from domain.sync import ExternalContact


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def randomly_chunked(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(data):
        size = rng.choice([1, 2, 3, 7, 64, 1000])
        chunks.append(data[i : i + size])
        i += size
    return chunks


def contacts_of(chunks: list[bytes]) -> tuple[CsvColumns, list[tuple[int, ExternalContact]]]:
    columns, rows = read_contacts(chunks)
    return columns, list(rows)


def malformed(data: bytes) -> MalformedCsv:
    with pytest.raises(MalformedCsv) as caught:
        contacts_of([data])
    return caught.value


TRICKY = (
    "\ufeffE-Mail ; FIRSTNAME;last_name;Phone Number;Company name;Notes\r\n"
    'ann@example.com;Ann;Lee;+1 555;"Acme; Inc.";"said ""hi""\r\nthen left"\r\n'
    "\r\n"
    'bob@example.com;"Bob";;;;\n'
    "cy@example.com;Cy\r"
    "dee@example.com;Dee;Doe;;Initech;"
).encode()


def test_bom_semicolons_quotes_newlines_and_headers_in_any_case():
    columns, rows = contacts_of([TRICKY])

    assert (columns.email, columns.first_name, columns.last_name, columns.phone) == (0, 1, 2, 3)
    assert {key: (f.title, f.personalization_tag) for key, f in columns.declared.items()} == {
        "company_name": ("Company name", "%COMPANY_NAME%"),
        "notes": ("Notes", "%NOTES%"),
    }
    assert [row for row, _ in rows] == [2, 4, 5, 6]  # the blank row 3 is left out, and counted
    ann = rows[0][1]
    assert (ann.email, ann.first_name, ann.last_name, ann.phone) == (
        "ann@example.com",
        "Ann",
        "Lee",
        "+1 555",
    )
    assert ann.fields == {"company_name": "Acme; Inc.", "notes": 'said "hi"\r\nthen left'}
    assert rows[1][1].fields == {}  # empty cells are not values
    assert (rows[2][1].email, rows[2][1].first_name) == ("cy@example.com", "Cy")  # \r alone
    assert rows[3][1].external_id == "6"  # a CSV contact's external id is its row number


def test_a_comma_file_with_a_semicolon_inside_a_field():
    data = b'email,first name,Comment\na@example.com,A,"x; y; z"\n'

    _, rows = contacts_of([data])

    assert rows[0][1].fields == {"comment": "x; y; z"}


@pytest.mark.parametrize(
    "header",
    ["email", "EMAIL", " Email ", "e-mail", "E-Mail", "email address", "Email_Address"],
)
def test_the_email_column_is_found_whatever_its_spelling(header: str):
    columns, rows = contacts_of([f"name,{header}\nJo,jo@example.com\n".encode()])

    assert columns.email == 1
    assert rows[0][1].email == "jo@example.com"
    assert list(columns.declared) == ["name"]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64])
def test_chunks_cut_anywhere_give_the_same_rows(size: int):
    whole = contacts_of([TRICKY])

    assert contacts_of(chunked(TRICKY, size)) == whole
    assert contacts_of(randomly_chunked(TRICKY, seed=size)) == whole


def test_a_multibyte_character_and_the_bom_split_across_chunks():
    data = "\ufeffemail,City\nzoë@example.com,Zürich\n".encode()

    _, rows = contacts_of(chunked(data, 1))

    assert (rows[0][1].email, rows[0][1].fields) == ("zoë@example.com", {"city": "Zürich"})


def test_rows_shorter_than_the_header_have_empty_cells():
    _, rows = contacts_of([b"email,first name,phone\na@example.com\n"])

    assert (rows[0][1].first_name, rows[0][1].phone) == ("", "")


def test_personalization_tags_follow_the_rule_of_the_connectors():
    assert personalization_tag_of("Company name") == "%COMPANY_NAME%"
    assert personalization_tag_of("Total spent ($)") == "%TOTAL_SPENT____%"
    assert personalization_tag("Shopify", "Total Spent") == "%SHOPIFY_TOTAL_SPENT%"


@pytest.mark.parametrize(
    ("data", "row", "words"),
    [
        (b"", 1, "empty"),
        (b"\xef\xbb\xbf", 1, "empty"),
        (b"name,phone\nJo,1\n", 1, "no email column"),
        (b"email,E-mail\na@example.com,b@example.com\n", 1, "both name the email"),
        (b"email,Notes,notes\n", 1, "would both fill the field %NOTES%"),
        (b"email,name\na@example.com,A\nb@example.com,B,extra\n", 3, "has 3 fields"),
        (b'email,name\na@example.com,A\nb@example.com,"B\n', 3, "not closed"),
        (b'email,name\na@example.com,"A"x\n', 2, "not valid CSV"),
        (b"email\na@example.com\nb@example.com\n\xff\xfe\n", 4, "not UTF-8"),
        (b"email\na@example.com\nb\xc3", 3, "ends inside a UTF-8 character"),
        (b"email\n" + b"x" * (MAX_LINE + 10), 2, "line longer"),
    ],
)
def test_a_malformed_file_names_the_row(data: bytes, row: int, words: str):
    error = malformed(data)

    assert error.row == row
    assert words in error.reason
    assert str(error).startswith(f"row {row}: ")


def test_a_malformed_row_comes_after_the_rows_before_it_were_read():
    data = b"email\na@example.com\n" + b'"b@example.com\n' * 3
    _, rows = read_contacts([data])
    seen = []

    with pytest.raises(MalformedCsv) as caught:
        for row, contact in rows:
            seen.append((row, contact.email))

    assert seen == [(2, "a@example.com")]
    assert caught.value.row == 3


def test_records_count_every_line_of_a_quoted_field_as_one_row():
    data = b'email,note\na@example.com,"1\n2\n3"\nb@example.com,x\n'

    assert [row for row, _ in read_records([data])] == [1, 2, 3]


# -- constant memory --------------------------------------------------------------------------


def generated_file(rows: int, chunk_size: int = 65536) -> Iterator[bytes]:
    """A CSV file of `rows` contacts, made as it is read: never whole in memory."""
    buffer = bytearray(b"email,first name,Company,Notes\n")
    for n in range(rows):
        buffer += f'user{n}@example.com,User {n},Company {n % 97},"line one\nline two"\n'.encode()
        if len(buffer) >= chunk_size:
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]
    yield bytes(buffer)


def peak_memory_of_reading(rows: int) -> int:
    tracemalloc.start()
    try:
        _, contacts = read_contacts(generated_file(rows))
        count = sum(1 for _ in contacts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    return peak


def test_reading_a_file_takes_the_same_memory_whatever_its_size():
    small = peak_memory_of_reading(50_000)
    large = peak_memory_of_reading(200_000)  # about 12 MB of CSV

    assert large < 1_000_000  # a few chunks and rows, never the file
    assert large < small * 1.5  # four times the rows, not four times the memory


# -- first row wins, per file, however uploads interleave (domain.csv_import) -----------------

EMAILS = ["a@example.com", "A@Example.com", "b@example.com", "B@EXAMPLE.COM", "c@example.com"]
NAMES = ["", "Ann", "Bob", "Cy"]  # "" never erases; a name already held changes nothing
Row = tuple[str, str]  # (email, first name)


def uploads_applied(
    files: list[list[Row]], batch_rows: int, order: list[int]
) -> tuple[list[CsvImport], dict[str, Contact]]:
    """Applies each file batch by batch, the batches of the files interleaved as `order` says
    (an index of a file per batch; the batches left over follow, file by file), as saving them
    one after the other would: every batch sees the contacts the batches before it left."""
    account = Account.register("acme", "plus", 100_000, actor="admin")
    imports = [CsvImport.start("acme", CsvOptions(), actor="key:test") for _ in files]
    parsed = []
    for rows in files:
        columns, contacts = contacts_of([b"email,first name\n" + _lines(rows)])
        batches = [contacts[i : i + batch_rows] for i in range(0, len(contacts), batch_rows)]
        parsed.append((columns, batches))
    held: dict[str, Contact] = {}
    leftover = [n for n, (_, batches) in enumerate(parsed) for _ in batches]
    for n in order + leftover:
        columns, batches = parsed[n]
        if not batches:
            continue
        batch = batches.pop(0)
        emails = {normalize_email(c.email) for _, c in batch}
        result = apply_batch(
            csv_import=imports[n],
            account=account,
            rows=batch,
            last_row=batch[-1][0],
            contacts={e: held.get(e) for e in emails},
            fields={},
            declared=columns.declared,
        )
        held.update((c.email, c) for c in result.new_aggregates if isinstance(c, Contact))
    return imports, held


def _lines(rows: list[Row]) -> bytes:
    return "".join(f"{email},{name}\n" for email, name in rows).encode()


def duplicate_rows(csv_import: CsvImport) -> list[int]:
    return [e["row"] for e in csv_import.report["errors"] if e["reason"].startswith("duplicate")]


def test_a_later_row_is_a_duplicate_when_another_upload_applied_its_email_in_between():
    first = [("a@example.com", "Ann"), ("x@example.com", ""), ("A@example.com", "Later")]
    other = [("a@example.com", "Bob")]

    (one, two), contacts = uploads_applied([first, other], batch_rows=2, order=[0, 1, 0])

    assert (one.report["duplicates_in_file"], duplicate_rows(one)) == (1, [4])
    assert two.report["duplicates_in_file"] == 0 and two.report["updated"] == 1
    assert contacts["a@example.com"].first_name == "Bob"  # the other upload's first row


FILES = st.lists(
    st.lists(st.tuples(st.sampled_from(EMAILS), st.sampled_from(NAMES)), min_size=1, max_size=12),
    min_size=2,
    max_size=3,
)


@given(FILES, st.integers(min_value=1, max_value=4), st.data())
def test_each_file_s_first_row_of_an_email_is_applied_once_however_batches_interleave(
    files: list[list[Row]], batch_rows: int, data: st.DataObject
):
    """The rule: within one file only the first row of an email is applied, and every later
    row with it is reported a duplicate of that file, whatever other uploads did to the contact
    in between. Across files each file's first row is applied once, in the order the batches
    are saved, and the later one's known values win (as between any two sources)."""
    order = data.draw(st.lists(st.integers(min_value=0, max_value=len(files) - 1), max_size=40))

    imports, contacts = uploads_applied(files, batch_rows, order)

    # The model: the same interleaving, with a set of the emails each file applied.
    batches = [
        [rows[i : i + batch_rows] for i in range(0, len(rows), batch_rows)] for rows in files
    ]
    first_rows = [0] * len(files)
    leftover = [n for n, file_batches in enumerate(batches) for _ in file_batches]
    applied: list[set[str]] = [set() for _ in files]
    duplicates: list[list[int]] = [[] for _ in files]
    names: dict[str, str] = {}
    for n in order + leftover:
        if not batches[n]:
            continue
        for offset, (email, name) in enumerate(batches[n].pop(0)):
            row = 2 + first_rows[n] + offset  # the header is row 1
            key = email.lower()
            if key in applied[n]:
                duplicates[n].append(row)
                continue
            applied[n].add(key)
            names[key] = name or names.get(key, "")
        first_rows[n] += batch_rows
    for csv_import, rows, expected in zip(imports, files, duplicates, strict=True):
        report = csv_import.report
        assert report["rows"] == len(rows)
        assert duplicate_rows(csv_import) == expected
        assert report["duplicates_in_file"] == len(expected)
        assert report["added"] + report["updated"] + report["unchanged"] == len(rows) - len(
            expected
        )
    assert {email: c.first_name for email, c in contacts.items()} == names


# -- what the csv module refuses, and limits ----------------------------------------------------


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (",".join(f"c{n}" for n in range(100_000)), "has 100001 columns, at most 200"),
        ("x" * (MAX_FIELD + 1), f"longer than {MAX_FIELD:,} characters"),
        (",".join("y" * 1000 for _ in range(150)), "over 255 characters"),
        (";".join("z" * 1000 for _ in range(150)), "over 255 characters"),
    ],
)
def test_a_wide_header_is_refused_naming_the_limit(header: str, words: str):
    error = malformed(f"email,{header}\na@example.com\n".encode())

    assert (error.row, words in error.reason) == (1, True), error.reason


def test_the_field_limit_is_the_csv_module_s():
    assert csv.field_size_limit() == MAX_FIELD


def test_a_field_over_the_limit_in_a_data_row_names_the_limit():
    over_lines = b'email,note\na@example.com,"' + b"0123456789\n" * 1_000_000 + b'"\n'
    one_line = b'email,note\na@example.com,"' + b"x" * 10_000_000 + b'"\n'

    assert malformed(over_lines).reason == f"has a field longer than {MAX_FIELD:,} characters"
    assert malformed(one_line).reason == f"has a line longer than {MAX_LINE:,} characters"


# Pieces that make the csv module's every complaint likely: quotes in odd places, both
# delimiters, every line ending, NUL, bytes that are not UTF-8, and fields over the limit.
PIECES = st.sampled_from(
    [
        *(b"email", b"a@example.com", b",", b";", b'"', b'""', b"\n", b"\r", b"\r\n", b"\x00"),
        *(b"x", b" ", b"\xff", b"\xc3", b"y" * (MAX_FIELD // 2 + 1)),
    ]
)


@given(st.lists(PIECES, max_size=40), st.integers(min_value=1, max_value=50))
def test_any_file_is_rows_then_at_most_one_malformed_row_never_another_error(
    pieces: list[bytes], size: int
):
    _, rows = read_contacts_or_malformed(chunked(b"".join(pieces), size * 997))

    assert all(row >= 2 for row in rows)


def read_contacts_or_malformed(chunks: list[bytes]) -> tuple[MalformedCsv | None, list[int]]:
    """The rows read, and the error that ended the file (None when it was read to its end)."""
    seen: list[int] = []
    try:
        for row, _ in read_contacts(chunks)[1]:
            seen.append(row)
    except MalformedCsv as e:
        return e, seen
    return None, seen


@given(
    st.lists(st.text(st.characters(blacklist_categories=["Cs"]), max_size=6), min_size=1),
    st.data(),
)
def test_a_file_cut_inside_a_quoted_field_never_yields_the_cut_row(
    names: list[str], data: st.DataObject
):
    quoted = ['"' + name.replace('"', '""') + '"' for name in names]
    text = "email,name\n" + "".join(f"u{n}@example.com,{q}\n" for n, q in enumerate(quoted))
    cut_row = data.draw(st.integers(min_value=0, max_value=len(names) - 1))
    line = f"u{cut_row}@example.com,{quoted[cut_row]}"
    start = text.index(line) + len(f"u{cut_row}@example.com,") + 1  # after the opening quote
    cut = data.draw(st.integers(min_value=start, max_value=start + len(quoted[cut_row]) - 2))
    if text[start:cut].count('"') % 2:
        cut -= 1  # between the two quotes of an escaped one: still inside the field

    error, seen = read_contacts_or_malformed([text[:cut].encode()])

    assert error is not None and (error.row, "not closed" in error.reason) == (cut_row + 2, True)
    assert seen == list(range(2, cut_row + 2))


# -- control characters and formulas ------------------------------------------------------------

CONTROL_CHARACTERS = frozenset(
    chr(code)
    for code in (
        *range(0x00, 0x20),
        *range(0x7F, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
    if chr(code) not in "\t\n\r"
)
CONTROLS = st.sampled_from(sorted(CONTROL_CHARACTERS))
TEXT = st.text(st.one_of(st.characters(blacklist_categories=["Cs"]), CONTROLS), max_size=12)


@given(st.text("abc XYZ_-", min_size=1, max_size=10), CONTROLS, st.data())
def test_a_header_with_a_control_character_is_refused_naming_its_column(
    title: str, control: str, data: st.DataObject
):
    cells = ["email", "First name", "Notes", "Plan"]
    column = data.draw(st.integers(min_value=0, max_value=len(cells) - 1))
    at = data.draw(st.integers(min_value=0, max_value=len(title)))
    cells[column] = title[:at] + control + title[at:]

    with pytest.raises(MalformedCsv) as caught:
        CsvColumns.from_header(cells)

    assert caught.value.reason == (
        f"column {column + 1}'s name holds a control character (U+{ord(control):04X})"
    )


def test_tabs_and_line_breaks_in_a_header_are_spaces():
    columns = CsvColumns.from_header(["email", "Company\tname", "Shoe\r\nsize"])

    assert [f.title for f in columns.declared.values()] == ["Company name", "Shoe size"]


@given(st.lists(TEXT, min_size=4, max_size=4), st.text(max_size=5))
def test_values_lose_their_control_characters_and_keep_every_other_one(
    values: list[str], email: str
):
    notes = {"notes": values[3]} if values[3].strip() else {}  # as a file's row holds them
    contact = ExternalContact("2", email, *values[:3], fields=notes)

    cleaned, count = contact_without_controls(contact)

    expected = ["".join(c for c in value if c not in CONTROL_CHARACTERS) for value in values]
    assert [cleaned.first_name, cleaned.last_name, cleaned.phone] == expected[:3]
    assert cleaned.fields == ({"notes": expected[3]} if expected[3].strip() else {})
    assert cleaned.email == email  # an address is not guessed at: it is refused as invalid
    kept = values if notes else values[:3]
    assert count == sum(value != clean for value, clean in zip(kept, expected, strict=False))


@pytest.mark.parametrize(
    ("value", "formula"),
    [
        ('=HYPERLINK("http://evil.example","click")', True),
        ("=cmd|' /C calc'!A0", True),
        ("+1+1", True),
        ("-1+1", True),
        ("@SUM(1+1)*cmd|' /C calc'!A0", True),
        ("  =1+1", True),
        ("\t=1+1", True),
        ("\t@SUM(A1)", True),
        ("+1 (555) 010-0100", False),
        ("-12.50", False),
        ("Ann", False),
        ("a=b", False),
        ("", False),
    ],
)
def test_a_value_a_spreadsheet_would_run_is_a_formula(value: str, formula: bool):
    in_a_field = ExternalContact("2", "a@example.com", fields={"notes": value})
    as_a_name = ExternalContact("2", "a@example.com", first_name=value)

    assert holds_formula(in_a_field) is holds_formula(as_a_name) is formula

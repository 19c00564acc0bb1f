"""A CSV file of contacts, read as a stream: constant memory whatever the size of the file.

The bytes arrive in chunks of any size (a character, a line or a record may span chunks). They
are decoded incrementally (UTF-8, with or without a BOM), cut into lines, and parsed by the csv
module one line at a time, so that no more than one record is held at once.

The first record is the header. The delimiter is a comma or a semicolon: whichever splits the
header line into more fields. Columns are recognized by name, ignoring case, spaces and
punctuation ("E-mail", "email address", "First_Name"...): email (required), first name, last
name, phone. Every other named column is a custom field titled by its header.

Control characters: a header holding one is refused (it would become a field's title, shown
everywhere), a value holding one is cleaned (`contact_without_controls`). Formulas: a value a
spreadsheet would run is kept as written, and flagged (`holds_formula`).
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from domain.sources import personalization_tag_of
from domain.sync import DeclaredField, ExternalContact
from domain.text import CONTROLS, without_controls

# The service of the custom fields that CSV columns create.
CSV_SERVICE = "csv"
MAX_LINE = 1 << 20  # characters in one line
MAX_FIELD = 131_072  # characters in one field (a quoted one may span lines): the csv module's limit
MAX_COLUMNS = 200
MAX_TITLE = 255

_ALIASES = {
    "email": "email",
    "emailaddress": "email",
    "firstname": "first_name",
    "lastname": "last_name",
    "phone": "phone",
    "phonenumber": "phone",
}
_EMAIL_NAMES = '"email", "e-mail" or "email address"'

# What a spreadsheet runs rather than shows (OWASP's CSV injection): a cell starting, after any
# spaces or tabs, with "=" or "@", or with "+" or "-" followed by more than a number or a phone
# number ("+1 (555) 010-0100" and "-12.50" are values; "+1+1" and "-2+3+cmd|..." are formulas).
_FORMULA = re.compile(r"\s*(?:[=@]|[+-](?![\d\s().\-/]*$))")


class MalformedCsv(ValueError):
    """The file cannot be read as CSV from `row` on (the header is row 1)."""

    def __init__(self, row: int, reason: str):
        super().__init__(f"row {row}: {reason}")
        self.row = row
        self.reason = reason


class _Unreadable(Exception):
    """Raised while cutting lines; the record loop knows which row it was reading."""


def _texts(chunks: Iterable[bytes]) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()  # drops a BOM, even split in chunks
    for chunk in chunks:
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as e:
            yield e.object[: e.start].decode("utf-8")  # the rows before the bad bytes
            bad = e.object[e.start]
            raise _Unreadable(f"is not UTF-8 text (byte 0x{bad:02x})") from None
        if text:
            yield text
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _Unreadable("the file ends inside a UTF-8 character") from None


_NEWLINE = re.compile(r"[\r\n]")


def _lines(texts: Iterable[str]) -> Iterator[str]:
    """Lines with their terminator (\\n, \\r\\n or \\r), as the csv module wants them, whatever
    the cuts between texts. A line longer than MAX_LINE is refused rather than held."""
    pending: list[str] = []  # pieces of the line under way
    size = 0
    held_cr = False  # the line ended with "\r" at the end of a text: maybe "\r\n"
    for text in texts:
        pos = 0
        if held_cr:
            if text.startswith("\n"):
                pending.append("\n")
                pos = 1
            yield "".join(pending)
            pending, size, held_cr = [], 0, False
        while True:
            found = _NEWLINE.search(text, pos)
            if found is None:
                end = len(text)
            else:
                end = found.end()
                if found.group() == "\r":
                    if end == len(text):
                        held_cr = True
                    elif text[end] == "\n":
                        end += 1
            size += end - pos
            if size > MAX_LINE:
                raise _Unreadable(f"has a line longer than {MAX_LINE:,} characters")
            pending.append(text[pos:end])
            pos = end
            if found is None or held_cr:
                break
            yield "".join(pending)
            pending, size = [], 0
    if pending and any(pending):
        yield "".join(pending)


def _delimiter(header_line: str) -> str:
    def width(delimiter: str) -> int:
        try:
            return len(next(csv.reader([header_line], delimiter=delimiter), []))
        except csv.Error:  # a field over MAX_FIELD: not this delimiter, or the reader says so
            return 0

    return ";" if width(";") > width(",") else ","


def read_records(chunks: Iterable[bytes]) -> Iterator[tuple[int, list[str]]]:
    """Each record as (row number, cells), the header first as row 1. A blank line is a
    record with no cells. Raises MalformedCsv naming the row that could not be read."""
    lines = _lines(_texts(chunks))
    try:
        first = next(lines)
    except StopIteration:
        raise MalformedCsv(1, "the file is empty: the first row must name the columns") from None
    except _Unreadable as e:
        raise MalformedCsv(1, str(e)) from None
    reader = csv.reader(
        itertools.chain([first], lines), delimiter=_delimiter(first), quotechar='"', strict=True
    )
    row = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _Unreadable as e:
            raise MalformedCsv(row + 1, str(e)) from None
        except csv.Error as e:
            raise MalformedCsv(row + 1, _csv_complaint(str(e))) from None
        row += 1
        yield row, cells


def _csv_complaint(reason: str) -> str:
    """What the csv module's error means to whoever wrote the file."""
    if reason.startswith("field larger than field limit"):
        return f"has a field longer than {MAX_FIELD:,} characters"
    if reason == "unexpected end of data":
        reason = "a quoted field is not closed before the end of the file"
    return f"is not valid CSV ({reason})"


@dataclass(frozen=True)
class CsvColumns:
    """What the header says: where the contact's attributes are, and the custom fields."""

    width: int
    email: int
    first_name: int | None
    last_name: int | None
    phone: int | None
    custom: tuple[tuple[int, str], ...]  # (column, field key)
    declared: dict[str, DeclaredField]  # custom fields by key

    @classmethod
    def from_header(cls, cells: list[str]) -> CsvColumns:
        if len(cells) > MAX_COLUMNS:
            raise MalformedCsv(1, f"has {len(cells)} columns, at most {MAX_COLUMNS} are allowed")
        standard: dict[str, int] = {}
        custom: list[tuple[int, str]] = []
        declared: dict[str, DeclaredField] = {}
        titles: dict[str, str] = {}
        for i, raw in enumerate(cells):
            control = CONTROLS.search(raw)
            if control is not None:
                code = f"U+{ord(control.group()):04X}"
                raise MalformedCsv(1, f"column {i + 1}'s name holds a control character ({code})")
            title = " ".join(raw.split())
            if not title:
                continue  # an unnamed column: its values are ignored
            name = _ALIASES.get(re.sub(r"[^a-z0-9]", "", title.lower()))
            if name is not None:
                if name in standard:
                    other = cells[standard[name]].strip()
                    raise MalformedCsv(1, f"columns {other!r} and {title!r} both name the {name}")
                standard[name] = i
                continue
            if len(title) > MAX_TITLE:
                raise MalformedCsv(1, f"column {i + 1}'s name is over {MAX_TITLE} characters")
            tag = personalization_tag_of(title)
            key = tag.strip("%").lower()
            if key in titles:
                raise MalformedCsv(
                    1, f"columns {titles[key]!r} and {title!r} would both fill the field {tag}"
                )
            titles[key] = title
            custom.append((i, key))
            declared[key] = DeclaredField(key=key, title=title, personalization_tag=tag)
        if "email" not in standard:
            found = ", ".join(repr(c.strip()) for c in cells if c.strip()) or "none"
            raise MalformedCsv(
                1, f"no email column: one column must be named {_EMAIL_NAMES} (found {found})"
            )
        return cls(
            width=len(cells),
            email=standard["email"],
            first_name=standard.get("first_name"),
            last_name=standard.get("last_name"),
            phone=standard.get("phone"),
            custom=tuple(custom),
            declared=declared,
        )

    def contact(self, row: int, cells: list[str]) -> ExternalContact | None:
        """The row as an external contact whose id is the row number; None for a blank row.
        Missing trailing cells are empty; more cells than the header has are an error."""
        if not any(cell.strip() for cell in cells):
            return None
        if len(cells) > self.width:
            raise MalformedCsv(row, f"has {len(cells)} fields but the header has {self.width}")

        def cell(i: int | None) -> str:
            return cells[i] if i is not None and i < len(cells) else ""

        return ExternalContact(
            external_id=str(row),
            email=cell(self.email),
            first_name=cell(self.first_name),
            last_name=cell(self.last_name),
            phone=cell(self.phone),
            fields={key: cell(i) for i, key in self.custom if cell(i).strip()},
        )


def contact_without_controls(contact: ExternalContact) -> tuple[ExternalContact, int]:
    """The contact with the control characters taken out of its values, and how many values
    held any. A stray control character is an accident of copying or exporting, not meant, so
    the row is kept rather than refused; the email is left as written, since guessing what an
    address should have been is worse than skipping it as invalid (it is: email_validator
    refuses control characters)."""
    cleaned = 0

    def clean(value: str) -> str:
        nonlocal cleaned
        result, count = without_controls(value)
        if count:
            cleaned += 1
        return result

    first_name, last_name, phone = (
        clean(v) for v in (contact.first_name, contact.last_name, contact.phone)
    )
    fields = {key: clean(value) for key, value in contact.fields.items()}
    if not cleaned:
        return contact, 0
    fields = {key: value for key, value in fields.items() if value.strip()}  # none left: empty
    return replace(
        contact, first_name=first_name, last_name=last_name, phone=phone, fields=fields
    ), cleaned


def holds_formula(contact: ExternalContact) -> bool:
    """Whether a value of the contact would run as a formula in a spreadsheet it is exported to."""
    values = (contact.email, contact.first_name, contact.last_name, contact.phone)
    return any(_FORMULA.match(value) for value in (*values, *contact.fields.values()))


def read_contacts(
    chunks: Iterable[bytes],
) -> tuple[CsvColumns, Iterator[tuple[int, ExternalContact]]]:
    """The header's columns (read at once), and the file's contacts as (row, contact), read as
    they are consumed. Blank rows are left out. Raises MalformedCsv, from the header or later."""
    records = read_records(chunks)
    header = next(records, None)
    if header is None:
        raise MalformedCsv(1, "the file is empty: the first row must name the columns")
    columns = CsvColumns.from_header(header[1])

    def contacts() -> Iterator[tuple[int, ExternalContact]]:
        for row, cells in records:
            contact = columns.contact(row, cells)
            if contact is not None:
                yield row, contact

    return columns, contacts()

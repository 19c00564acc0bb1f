"""What the client shows: aligned records and tables for people, or JSON; errors on stderr."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

EMPTY = "-"
# What a terminal obeys rather than shows: C0 and C1 controls and DEL (ESC sequences move the
# cursor, clear the screen, recolour), and the bidi embeddings, overrides and isolates that
# reorder a line. A stored value may hold any (a sync, an older import), so the text shows them
# escaped, as Python writes them; line breaks too, which would break a table's alignment.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class View:
    """What a command shows: `data` with --json, `text` otherwise; `note` goes to stderr."""

    data: Any
    text: str
    note: str = ""
    # The command's exit status: 1 for an answer that says something is wrong (a failed check).
    exit_code: int = 0


def emit(view: View, as_json: bool) -> None:
    """The one place that prints a command's result."""
    if view.note:
        print(view.note, file=sys.stderr)
    print(json.dumps(view.data, indent=2, ensure_ascii=False) if as_json else view.text)


def as_dict(message: Message) -> dict[str, Any]:
    """The message as proto3 JSON, with proto field names and every field (defaults too)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def record(message: Message, omit: Collection[str] = (), expand: str = "") -> View:
    """A single resource: one aligned `field: value` line per field, nested fields dotted.

    The text leaves out the fields named in `omit` (the JSON keeps every field); the map field
    named by `expand` comes last, as a `name:` line then one `  key: value` line per entry."""
    data = as_dict(message)
    shown = {name: value for name, value in data.items() if name not in {*omit, expand}}
    pairs = _fields(shown, cast(Descriptor, message.DESCRIPTOR))
    entries = sorted(data.get(expand, {}).items()) if expand else []
    if expand and not entries:
        pairs.append((expand, EMPTY))
    text = aligned(pairs)
    if entries:
        text += f"\n{expand}:\n" + "\n".join(f"  {key}: {cell(value)}" for key, value in entries)
    return View(data, text)


def sections(*texts: str) -> str:
    """The non-empty texts, a blank line apart."""
    return "\n\n".join(text for text in texts if text)


def aligned(pairs: Iterable[tuple[str, str]]) -> str:
    pairs = list(pairs)
    width = max((len(name) for name, _ in pairs), default=0) + 1
    return "\n".join(f"{name + ':':<{width}} {value}" for name, value in pairs)


def visible(text: str) -> str:
    """The text with every control character escaped (ESC as \\x1b, a line break as \\n)."""
    return _CONTROLS.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns aligned on their widest cell, two spaces apart."""
    lines = [list(headers), *([visible(str(cell)) for cell in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def error_lines(error: grpc.RpcError) -> list[str]:
    """`error: <CODE>: <details>`, then one indented line per field violation."""
    call = cast(grpc.Call, error)
    lines = [f"error: {call.code().name}: {visible(call.details() or '')}"]
    lines += [f"  {v.field}: {visible(v.description)}" for v in _field_violations(call)]
    return lines


def _field_violations(call: grpc.Call) -> list[error_details_pb2.BadRequest.FieldViolation]:
    try:
        status = rpc_status.from_call(call)  # type: ignore[arg-type]
    except ValueError:  # the rich status disagrees with the call's code or message
        return []
    violations: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in status.details if status is not None else []:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations.extend(bad_request.field_violations)
    return violations


def _fields(
    data: dict[str, Any], descriptor: Descriptor, prefix: str = ""
) -> list[tuple[str, str]]:
    """`(dotted name, value)` in the order of the proto definition."""
    pairs: list[tuple[str, str]] = []
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value, name, message_type = data[field.name], prefix + field.name, field.message_type
        if isinstance(value, dict) and message_type is not None and _is_plain(message_type):
            pairs += _fields(value, message_type, name + ".")
        else:
            pairs.append((name, cell(value)))
    return pairs


def _is_plain(descriptor: Descriptor) -> bool:
    """A message of the API itself (not a map entry, not a well-known type such as Struct)."""
    return not descriptor.GetOptions().map_entry and not descriptor.full_name.startswith(
        "google.protobuf."
    )


def cell(value: Any) -> str:
    """A value on one line: a string as is, a list comma-separated, "-" when empty, else JSON."""
    if isinstance(value, str):
        return visible(value) or EMPTY
    if isinstance(value, list):
        return ", ".join(cell(item) for item in value) or EMPTY
    return compact_json(value)

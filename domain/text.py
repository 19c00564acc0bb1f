"""Characters no one means in a name or a value, that a display obeys instead of showing: the C0
and C1 controls and DEL (NUL, BEL, ESC sequences that drive a terminal), and the bidi
embeddings, overrides and isolates that reorder the text around them (a name shown as another).
Tabs and line breaks are text: a quoted CSV field may hold lines. PostgreSQL's text cannot hold
NUL at all: one stored in a read model's row stops its projection, for every account.

A CSV file's header holding one is refused; values from a CSV file or a source have them taken
out (a stray control character is an accident of copying or exporting, not meant).
"""

from __future__ import annotations

import re

CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def without_controls(value: str) -> tuple[str, int]:
    """The value with its control characters taken out, and how many there were."""
    return CONTROLS.subn("", value)

"""normalize_email: email-validator's verdict, with its domain checked once per domain."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.contact import InvalidEmail, normalize_email

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
local_parts = st.one_of(
    st.text(alphabet=ATEXT + ".", min_size=0, max_size=70),
    st.text(alphabet=ATEXT + '. "@\\<>()[],;:éß\u0301\u202e\x00\t', max_size=20),
    st.integers(0, 240).map(lambda n: "a" * n),  # across the lengths that are refused
)
labels = st.sampled_from(
    ["example", "EXAMPLE", "b\u00fccher", "xn--bcher-kva", "ex-ample", "-bad", "bad-", "a_b",
     "localhost", "test", "invalid", "123", "a" * 63, "a" * 64, "\u0301x", "mail\u202e", ""]
)  # fmt: skip
domains = st.one_of(
    st.lists(labels, min_size=1, max_size=5).map(".".join),
    st.lists(labels, min_size=1, max_size=4).map(lambda ls: ".".join(ls) + ".com"),
    st.just("[127.0.0.1]"),
    st.text(max_size=30),
)
addresses = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains),
    st.builds(lambda a, b, c: f"{a}@{b}@{c}", local_parts, domains, domains),
    st.text(max_size=40),
    st.builds(lambda s, address: s + address + s, st.sampled_from([" ", "\t", ""]), st.text()),
)


def reference(raw: str) -> str:
    """What email-validator says, as normalize_email's contract states it."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as e:
        return f"invalid: {e}"


def ours(raw: str) -> str:
    try:
        return normalize_email(raw)
    except InvalidEmail as e:
        return f"invalid: {e}"


@settings(max_examples=3000, deadline=None)
@given(addresses)
@example("Person.Name+tag@Example.COM")
@example("a@b\u00fccher.example.com")
@example("a@xn--bcher-kva.example.com")
@example("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".com")  # 254 + 5
@example("person@localhost")
@example('"quoted"@example.com')
@example("a@[127.0.0.1]")
@example("a@b@example.com")
def test_normalize_email_says_what_email_validator_says(raw: str):
    assert ours(raw) == reference(raw)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  Person.Name@Example.COM ", "person.name@example.com"),
        ("a@xn--bcher-kva.example.com", "a@b\u00fccher.example.com"),
    ],
)
def test_one_spelling_per_address(raw: str, normalized: str):
    assert normalize_email(raw) == normalized

"""Conversions from the read model to protobuf that the end-to-end tests do not pin down."""

from __future__ import annotations

from datetime import UTC, datetime

from service.api.convert import contact_message
from service.read_models.contacts import ContactRow


def test_a_contact_touched_by_several_csv_uploads_shows_csv_once_among_its_sources():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    row = ContactRow(
        contact_id="c",
        account_id="acme",
        email="a@example.com",
        first_name="",
        last_name="",
        phone="",
        status="ACTIVE",
        fields={},
        list_ids=[],
        tags=[],
        sources=["csv:1", "import-1", "csv:2"],
        create_time=now,
        update_time=now,
    )

    assert list(contact_message(row).source_imports) == ["csv", "accounts/acme/imports/import-1"]

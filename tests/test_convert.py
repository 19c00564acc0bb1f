"""Conversions from the read model to protobuf that the end-to-end tests do not pin down."""

from __future__ import annotations

from datetime import UTC, datetime

from service.api.convert import contact_message, csv_report_message
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


def test_the_report_of_a_csv_import_saved_before_the_formula_flag_reads_as_none_flagged():
    old_counters = ("rows", "added", "updated", "unchanged", "duplicates_in_file")
    old_counters += ("skipped_missing_email", "skipped_invalid_email", "blocked_by_limit")
    report = {**dict.fromkeys(old_counters, 1), "fields_created": 0, "errors": []}

    message = csv_report_message(report)

    assert (message.rows, message.cells_cleaned, message.rows_with_formulas) == (1, 0, 0)
    assert list(message.formula_rows) == []

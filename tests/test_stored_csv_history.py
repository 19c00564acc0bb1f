"""CSV imports stored before the report gained cells_cleaned, rows_with_formulas and
formula_rows load with today's code through eventsourcing's upcasting (class_version 2), from
their events and from their snapshots, and an interrupted one carries on.

tests/fixtures/csv_import_history_v1.json holds them as the code of commit 9c2f287 stored them:
a completed import of five rows in batches of two (one invalid email), and one cut after two
batches (four rows), still running; a snapshot of each.
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest

from domain.csv_import import CsvImport, CsvImportState, CsvOptions, new_csv_report
from service.application import AutoImports
from service.csv_import import CsvImporter
from tests.test_stored_history import _stored

FIXTURE = json.loads(
    (Path(__file__).parent / "fixtures" / "csv_import_history_v1.json").read_text()
)
NEW_IN_V2 = {"cells_cleaned": 0, "rows_with_formulas": 0, "formula_rows": []}


def _app(*, with_snapshots: bool) -> AutoImports:
    app = AutoImports({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.recorder.insert_events([_stored(r) for r in FIXTURE["events"]])
    if with_snapshots:
        assert app.snapshots is not None
        app.snapshots.recorder.insert_events([_stored(r) for r in FIXTURE["snapshots"]])
    return app


def _id(request_id: str) -> UUID:
    return CsvImport.create_id("acme", request_id)


@pytest.mark.parametrize("with_snapshots", [False, True])
def test_imports_stored_by_version_1_load_with_every_counter_of_today(with_snapshots: bool):
    app = _app(with_snapshots=with_snapshots)

    for request_id in ("done", "cut"):
        loaded: CsvImport = app.repository.get(_id(request_id))
        assert loaded.report == {**FIXTURE["reports"][request_id], **NEW_IN_V2}
        assert set(loaded.report) == set(new_csv_report())
    assert app.repository.get(_id("done")).state is CsvImportState.COMPLETED


@pytest.mark.parametrize("with_snapshots", [False, True])
def test_an_import_cut_under_version_1_carries_on_under_today_s_code(with_snapshots: bool):
    app = _app(with_snapshots=with_snapshots)
    app.upsert_account("acme", "lite", 1000, actor="admin")
    cut = [
        f"{n}-cut@example.com,{name},Acme"
        for n, name in zip("abcd", ["Ann", "Bob", "Cy", "Di"], strict=True)
    ]
    rest = ["e-cut@example.com,=HYPERLINK(1),Acme", "f-cut@example.com,F\x1bay,Acme"]
    file = "email,first_name,company\n" + "".join(f"{line}\n" for line in cut + rest)

    report = CsvImporter(app, batch_rows=2).run(
        "acme", CsvOptions(request_id="cut"), [file.encode()], actor="admin"
    )

    assert (report["rows"], report["added"]) == (6, 6)
    assert (report["rows_with_formulas"], report["formula_rows"], report["cells_cleaned"]) == (
        1,
        [6],
        1,
    )
    assert app.repository.get(_id("cut")).state is CsvImportState.COMPLETED

"""A history and snapshots stored before the aggregate was rewritten (events written once,
typed sync reports) load with today's code, event by event, into the same state.

tests/fixtures/auto_import_history_v1.json holds them as the code of commit a4dd27f stored them:
an import created, edited, paused and resumed, a sync recording every kind of sync event,
failed syncs up to NEEDS_REAUTH, new credentials, a sync still running at a snapshot, and the
delete that ended it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from domain.auto_import import AutoImport, ImportState
from domain.sync_report import SyncOutcome, SyncReport, upcast_report
from service.application import AutoImports
from service.read_models.syncs import report_of_row

FIXTURE = json.loads(
    (Path(__file__).parent / "fixtures" / "auto_import_history_v1.json").read_text()
)
EVENTS = FIXTURE["events"]
SNAPSHOTS = FIXTURE["snapshots"]
IMPORT_ID = UUID(EVENTS[0]["originator_id"])


def _stored(row: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        originator_id=UUID(row["originator_id"]),
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=row["state"].encode(),
    )


def _app(*, with_snapshots: bool) -> AutoImports:
    app = AutoImports({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.recorder.insert_events([_stored(r) for r in EVENTS])
    if with_snapshots:
        assert app.snapshots is not None
        app.snapshots.recorder.insert_events([_stored(r) for r in SNAPSHOTS])
    return app


def test_every_stored_event_decodes_to_its_class_and_encodes_back_the_same():
    mapper = AutoImports({"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    names = set()
    for row in EVENTS:
        event = mapper.to_domain_event(_stored(row))
        name = row["topic"].removeprefix("domain.auto_import:AutoImport.")
        names.add(name)
        assert type(event) is getattr(AutoImport, name)
        again = mapper.to_stored_event(event)
        assert again.topic == row["topic"]
        assert json.loads(again.state) == _as_today(type(event), json.loads(row["state"]))
    assert len(names) == 19  # every event the aggregate records


def _as_today(cls: type, state: dict[str, Any]) -> dict[str, Any]:
    """A stored event's state as today's class encodes it: upcast to its class_version (the
    sync reports gain the fields counted since, at their defaults), or unchanged."""
    version = getattr(cls, "class_version", 1)
    for n in range(1, version):
        getattr(cls, f"upcast_v{n}_v{n + 1}")(state)
    return {**state, "class_version": version} if version > 1 else state


def test_a_report_recorded_before_a_field_existed_loads_with_its_default():
    mapper = AutoImports({"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    for row in EVENTS:
        if row["topic"].endswith((".SyncCompleted", ".SyncFailed")):
            assert "skipped_at_source" not in json.loads(row["state"])["report"]
            event: Any = mapper.to_domain_event(_stored(row))
            assert SyncReport.from_dict(event.report).skipped_at_source == 0


@pytest.mark.parametrize("with_snapshots", [False, True])
def test_a_history_stored_before_the_rewrite_loads_into_the_same_state(with_snapshots: bool):
    app = _app(with_snapshots=with_snapshots)
    final = FIXTURE["final"]

    auto_import: AutoImport = app.repository.get(IMPORT_ID)

    assert auto_import.version == final["version"]
    assert auto_import.state is ImportState(final["state"]) is ImportState.DELETED
    assert auto_import.display_name == final["display_name"]
    assert auto_import.tags == final["tags"]
    assert auto_import.cursor == final["cursor"]
    assert auto_import.auth_failures == final["auth_failures"]
    assert auto_import.config_version == final["config_version"]
    assert auto_import.running_sync is None
    assert auto_import.last_sync == SyncReport.from_dict(upcast_report(final["last_sync"]))
    assert auto_import.last_sync.outcome is SyncOutcome.FAILED
    assert auto_import.last_sync.unchanged == 3


def test_a_snapshot_stored_before_the_rewrite_keeps_its_running_sync():
    app = _app(with_snapshots=True)
    version = SNAPSHOTS[-1]["originator_version"]

    auto_import: AutoImport = app.repository.get(IMPORT_ID, version=version)
    from_events: AutoImport = _app(with_snapshots=False).repository.get(IMPORT_ID, version=version)

    running = auto_import.running_sync
    assert running is not None and running == from_events.running_sync
    assert (running.sync_id, running.outcome, running.unchanged) == ("s9", SyncOutcome.RUNNING, 3)
    assert auto_import.last_sync == from_events.last_sync
    assert auto_import.last_sync is not None and auto_import.last_sync.error == "401 unauthorized"
    assert auto_import.last_sync.auth_failure


def test_the_first_sync_of_the_history_is_reported_as_it_ran():
    app = _app(with_snapshots=False)
    completed = next(r for r in EVENTS if r["topic"].endswith(".SyncCompleted"))

    auto_import: AutoImport = app.repository.get(IMPORT_ID, version=completed["originator_version"])

    report = auto_import.last_sync
    assert report is not None
    assert report.outcome is SyncOutcome.LIMIT_REACHED
    assert report.counts() == {
        "fetched": 6,
        "added": 1,
        "updated": 1,
        "unchanged": 0,
        "skipped_missing_email": 1,
        "skipped_invalid_email": 1,
        "skipped_at_source": 0,  # counted since: a history from before has none
        "deferred": 2,
        "blocked_by_limit": 1,
        "deleted_at_source": 1,
        "fields_created": 1,
    }
    assert [s.external_id for s in report.skipped] == ["x3", "x4", "x5"]
    assert report.seconds == 5.0
    assert report.request_id == "r1"


def test_a_read_model_row_written_before_a_report_field_existed_reads_with_its_default():
    """The syncs and imports tables keep a report as its event carried it: rows written by an
    earlier projector hold the earlier shape."""
    completed = next(r for r in EVENTS if r["topic"].endswith(".SyncCompleted"))
    row_text = json.dumps(json.loads(completed["state"])["report"])

    report = report_of_row(row_text)

    assert (report.sync_id, report.skipped_at_source, report.auth_failure) == ("s1", 0, False)

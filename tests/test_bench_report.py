"""bench/report.py: the table and the JSON file of a benchmark run, from given figures."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from bench.report import HEADINGS, Figure, Target, run_document, table, write_json

CSV = Figure(
    "csv",
    "ImportCsv 100,000 rows, until all listed",
    "sqlite",
    28.7,
    "s",
    "sqlite-utils insert --csv",
    2.59,
    Target.ratio_at_most(1.0),
    {"rows": 100_000},
)
FULL = Figure(
    "scheduler",
    "imports synced per 30 min, full windows",
    "postgres",
    14_440.0,
    "imports",
    "SyncEngine in-process",
    15_208.0,
    Target.value_at_least(10_000),
)
LAG = Figure(
    "csv", "read model behind the report", "sqlite", 0.4, "s", target=Target.value_at_most(1)
)
RSS = Figure("csv", "server peak RSS", "sqlite", 90.0, "MiB", "once started", 74.0)
ENV = {"cpus": 2, "commit": "3da4ee298d01234", "dirty": False, "python": "3.11.7", "platform": "L"}


def cells(text: str) -> list[dict[str, str]]:
    """The table's rows by heading, cut at the columns the dashes under the headings mark."""
    lines = text.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    assert [lines[0][a:b].strip() for a, b in spans] == list(HEADINGS)
    return [
        {h: line[a:b].strip() for h, (a, b) in zip(HEADINGS, spans, strict=True)}
        for line in lines[2:]
    ]


def test_each_row_shows_its_figure_baseline_ratio_target_and_whether_it_is_met():
    rows = cells(table([CSV, FULL, LAG, RSS]))
    assert rows == [
        {
            "work": "ImportCsv 100,000 rows, until all listed",
            "store": "sqlite",
            "figure": "28.7 s",
            "baseline (same run)": "sqlite-utils insert --csv",
            "baseline": "2.59 s",
            "ratio": "11.08",
            "target": "ratio <= 1.0",
            "met": "NO",
        },
        {
            "work": "imports synced per 30 min, full windows",
            "store": "postgres",
            "figure": "14,440 imports",
            "baseline (same run)": "SyncEngine in-process",
            "baseline": "15,208 imports",
            "ratio": "0.95",
            "target": ">= 10,000 imports",  # absolute: the figure is judged, not the ratio
            "met": "yes",
        },
        {
            "work": "read model behind the report",
            "store": "sqlite",
            "figure": "0.400 s",
            "baseline (same run)": "",
            "baseline": "",
            "ratio": "",
            "target": "<= 1.00 s",
            "met": "yes",
        },
        {
            "work": "server peak RSS",
            "store": "sqlite",
            "figure": "90.0 MiB",
            "baseline (same run)": "once started",
            "baseline": "74.0 MiB",
            "ratio": "1.22",
            "target": "",
            "met": "",
        },
    ]


def test_a_run_s_file_holds_the_machine_the_commit_the_arguments_and_every_row(tmp_path: Path):
    started = datetime(2026, 12, 2, 4, 27, 1, tzinfo=UTC)
    document = run_document(
        [CSV, LAG],
        started=started,
        wall_seconds=512.5,
        arguments={"argv": ["--only", "csv"], "quick": False},
        benchmarks={"csv": 80.0},
        notes=["PostgreSQL skipped"],
        env=ENV,
    )
    path = write_json(document, tmp_path)
    assert path.name == "20261202T042701Z-3da4ee298d.json"
    saved = json.loads(path.read_text())
    assert {k: saved[k] for k in ("started", "wall_seconds", "cpus", "commit", "python")} == {
        "started": "2026-12-02T04:27:01Z",
        "wall_seconds": 512.5,
        "cpus": 2,
        "commit": "3da4ee298d01234",
        "python": "3.11.7",
    }
    assert saved["arguments"] == {"argv": ["--only", "csv"], "quick": False}
    assert saved["benchmark_seconds"] == {"csv": 80.0}
    assert saved["notes"] == ["PostgreSQL skipped"]
    csv, lag = saved["figures"]
    assert csv["work"] == CSV.work and csv["value"] == 28.7 and csv["baseline_value"] == 2.59
    assert csv["ratio"] == 28.7 / 2.59 and csv["met"] is False
    assert csv["target"] == {"bound": 1.0, "at_least": False, "absolute": False}
    assert csv["target_text"] == "ratio <= 1.0" and csv["details"] == {"rows": 100_000}
    assert lag["baseline_value"] is None and lag["ratio"] is None and lag["met"] is True

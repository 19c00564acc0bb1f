"""The benchmarks' one table: a `Figure` per row, the table printed, and the JSON of a run.

Every row is one figure next to the baseline measured beside it in the same run, and their
ratio (figure / baseline): absolute figures depend on the machine and on whatever else it is
doing, their ratio much less. A row's `target` is what the figure must reach (issue 11): a bound
on the ratio, or on the figure itself where the goal is absolute (imports per window).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Target:
    """At most (or `at_least`) `bound`: for the ratio, or for the figure itself if `absolute`."""

    bound: float
    at_least: bool = False
    absolute: bool = False

    @classmethod
    def ratio_at_most(cls, bound: float) -> Target:
        return cls(bound)

    @classmethod
    def value_at_most(cls, bound: float) -> Target:
        return cls(bound, absolute=True)

    @classmethod
    def value_at_least(cls, bound: float) -> Target:
        return cls(bound, at_least=True, absolute=True)

    def met_by(self, value: float, ratio: float | None) -> bool | None:
        measured = value if self.absolute else ratio
        if measured is None:
            return None
        return measured >= self.bound if self.at_least else measured <= self.bound

    def text(self, unit: str) -> str:
        sign = ">=" if self.at_least else "<="
        if self.absolute:
            return f"{sign} {number(self.bound)} {unit}"
        return f"ratio {sign} {self.bound:.1f}"


@dataclass(frozen=True)
class Figure:
    """One row: what was measured (`work`, on `store`), its value, and what it is compared with."""

    benchmark: str  # the module that measured it (python -m bench --only <benchmark>)
    work: str
    store: str  # "sqlite", "postgres", or "" for work that uses neither
    value: float
    unit: str  # of the value and of the baseline's value
    baseline: str = ""  # what the value is compared with, measured in the same run
    baseline_value: float | None = None
    target: Target | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # more figures, for the JSON only

    @property
    def ratio(self) -> float | None:
        if self.baseline_value is None or self.baseline_value == 0:
            return None
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met_by(self.value, self.ratio)

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["details"] = dict(self.details)
        row["ratio"] = self.ratio
        row["met"] = self.met
        row["target_text"] = self.target.text(self.unit) if self.target else ""
        return row


def number(value: float) -> str:
    """Three significant digits or so, with thousands separators: 0.174, 2.59, 28.7, 21,858."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def quantity(value: float | None, unit: str) -> str:
    return "" if value is None else f"{number(value)} {unit}"


HEADINGS = ("work", "store", "figure", "baseline (same run)", "baseline", "ratio", "target", "met")
NUMERIC = {"figure", "baseline", "ratio"}  # right-aligned


def table(figures: Sequence[Figure]) -> str:
    """The rows as a plain-text table, in the order given."""
    rows = [
        (
            f.work,
            f.store,
            quantity(f.value, f.unit),
            f.baseline,
            quantity(f.baseline_value, f.unit),
            "" if f.ratio is None else f"{f.ratio:.2f}",
            f.target.text(f.unit) if f.target else "",
            {True: "yes", False: "NO", None: ""}[f.met],
        )
        for f in figures
    ]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(HEADINGS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(w) if heading in NUMERIC else cell.ljust(w)
            for cell, w, heading in zip(cells, widths, HEADINGS, strict=True)
        ).rstrip()

    return "\n".join([line(HEADINGS), line(["-" * w for w in widths]), *map(line, rows)])


def git(*argv: str) -> str:
    """A read-only git query in the repository; "" when it fails."""
    done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def environment() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_document(
    figures: Sequence[Figure],
    *,
    started: datetime,
    wall_seconds: float,
    arguments: Mapping[str, Any],
    benchmarks: Mapping[str, float],
    notes: Sequence[str] = (),
    env: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a run's JSON file holds: where and how it ran, and every row."""
    return {
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_seconds": wall_seconds,
        **(environment() if env is None else env),
        "arguments": dict(arguments),
        "benchmark_seconds": dict(benchmarks),  # each benchmark's wall time, in run order
        "notes": list(notes),
        "figures": [f.to_json() for f in figures],
    }


def write_json(document: Mapping[str, Any], folder: Path = RESULTS_DIR) -> Path:
    """bench/results/<UTC start>-<short commit>.json: one file per run."""
    stamp = document["started"].replace("-", "").replace(":", "")
    commit = (document.get("commit") or "nocommit")[:10]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stamp}-{commit}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path


def log(message: str) -> None:
    """Progress, on stderr: stdout is the table."""
    print(message, file=sys.stderr, flush=True)


def stop_child(process: subprocess.Popen[Any]) -> None:
    """Stops a helper process that runs until its stdin closes (an emulator, the echo server);
    killed if it has not exited 10 s later."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

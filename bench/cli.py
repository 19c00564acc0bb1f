"""Running benchmarks: the options they all take, and a run's one table and JSON file.

A benchmark is a module with NAME, `add_arguments(parser)` (its own options, prefixed with its
name so that they can all be given to `python -m bench`) and `run(args) -> list[Figure]`.
`python -m bench` runs them all; `python -m bench.<module>` runs one, with the same options,
table and results file.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from types import ModuleType

from bench.report import ROOT, Figure, environment, log, run_document, table, write_json
from tests.support import PG_URL, postgres_error

STORES = ("sqlite", "postgres")


def parser_for(
    benchmarks: Sequence[ModuleType], prog: str, description: str
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run that every part works"
    )
    parser.add_argument(
        "--long", action="store_true", help="also the long runs (a 1,000,000-row CSV import)"
    )
    parser.add_argument(
        "--stores",
        default=",".join(STORES),
        help="comma-separated, of: sqlite, postgres (the first is the main one)",
    )
    for benchmark in benchmarks:
        benchmark.add_arguments(parser)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if unknown := set(args.stores) - set(STORES):
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    if not args.stores:
        parser.error("--stores names no store")
    return args


def run(benchmarks: Sequence[ModuleType], args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Runs each benchmark, prints the table of every figure, writes the run's JSON file; 1 when
    a benchmark failed (the others still run, and their figures are kept)."""
    notes: list[str] = []
    if "postgres" in args.stores and (error := postgres_error()):
        notes.append(f"PostgreSQL skipped: not reachable at {PG_URL} ({error})")
        args.stores = [s for s in args.stores if s != "postgres"]
    for note in notes:
        log(f"note: {note}")
    if not args.stores:
        return 2
    env = environment()
    started = datetime.now(UTC)
    start = time.perf_counter()
    figures: list[Figure] = []
    seconds: dict[str, float] = {}
    failed = False
    for benchmark in benchmarks:
        log(f"== {benchmark.NAME}")
        begun = time.perf_counter()
        try:
            figures += benchmark.run(args)
        except Exception as e:
            log(traceback.format_exc())
            notes.append(f"{benchmark.NAME} failed: {e!r}")
            failed = True
        seconds[benchmark.NAME] = time.perf_counter() - begun
        log(f"   {benchmark.NAME}: {seconds[benchmark.NAME]:.0f} s")
    wall = time.perf_counter() - start
    print(table(figures))
    print(
        f"\nwall time {wall:.0f} s ("
        + ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())
        + f"); {env['cpus']} CPUs, commit {env['commit'][:10]}{' (dirty)' if env['dirty'] else ''}"
    )
    for note in notes:
        print(f"note: {note}")
    arguments = {"argv": list(argv), **vars(args)}
    document = run_document(
        figures,
        started=started,
        wall_seconds=wall,
        arguments=arguments,
        benchmarks=seconds,
        notes=notes,
        env=env,
    )
    print(f"written to {write_json(document).relative_to(ROOT)}")
    return 1 if failed else 0


def main(benchmark: ModuleType, prog: str, argv: Sequence[str]) -> int:
    """`python -m bench.<module>`: that benchmark alone."""
    description = (benchmark.__doc__ or "").strip().split("\n")[0]
    parser = parser_for([benchmark], prog, description)
    return run([benchmark], parse(parser, argv), argv)

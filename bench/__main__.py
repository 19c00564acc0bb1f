"""`python -m bench` (`make bench`): every benchmark, one table, one JSON file per run.

Each row is a figure next to its baseline measured in the same run, their ratio, and the target
of issue 11 with whether it is met. The table is printed at the end (progress goes to stderr)
and written, with the machine's CPU count, the commit, the Python version, the platform, the
arguments and each benchmark's wall time, to bench/results/<UTC start>-<short commit>.json.

Benchmarks, in run order (each one's method is its module's docstring; each also runs alone,
`python -m bench.<module>`, with the same options):
  latency    bench/latency.py     GetImport, ListContacts p50/p99 vs a bare gRPC echo
  csv        bench/csv_import.py  ImportCsv of 100,000 rows vs sqlite-utils and a bare floor;
                                  the server's peak memory (--long: and for 1,000,000 rows)
  sync       bench/sync.py        first (500) and incremental (10 changed) syncs from each
                                  emulator vs reading the same pages with httpx + executemany
  scheduler  bench/scheduler.py   imports one node keeps synced per 30-minute window
  replay     bench/replay.py      rebuilding the read model from 1,000,000 events vs
                                  select_notifications alone

The default run takes under 10 minutes on the 2-CPU development machine; --quick is a smoke run
of small sizes (a minute or two); --only runs some of them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bench import cli, csv_import, latency, replay, scheduler, sync

BENCHMARKS = (latency, csv_import, sync, scheduler, replay)


def main(argv: Sequence[str]) -> int:
    parser = cli.parser_for(BENCHMARKS, "python -m bench", (__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[b.NAME for b in BENCHMARKS],
        metavar="NAME",
        help=f"run only these, of: {', '.join(b.NAME for b in BENCHMARKS)}",
    )
    args = cli.parse(parser, argv)
    chosen = [b for b in BENCHMARKS if not args.only or b.NAME in args.only]
    return cli.run(chosen, args, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

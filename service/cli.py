"""`autoimport`: the server (`serve`), the projector (`projector`), and a client for people."""

from __future__ import annotations

import argparse
import logging
import sys

from service.config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autoimport", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the gRPC server (configured by AUTOIMPORT_* variables)")
    commands.add_parser(
        "projector",
        help="keep the read models up to date, as a process of its own "
        "(then run servers with AUTOIMPORT_RUN_PROJECTIONS=no)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        print(f"autoimport: {e}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from service.server import serve

        serve(settings)
    elif args.command == "projector":
        from service.projector import run_projector

        run_projector(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`autoimport`: the server (`serve`), the projector (`projector`), the scheduler (`scheduler`),
`run` (server and scheduler supervised, with a demo: what `make run` runs), a client for people
(`accounts`, `imports`, ...), `replay --verify`, `doctor` and `rotate-key`."""

from __future__ import annotations

import argparse
import os
import sys

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from service import client_cli, logs
from service.config import ConfigError, Settings
from service.errors import first_line
from service.scheduler import add_scheduler_command, run_scheduler

SERVER_COMMANDS = ("serve", "projector", "replay", "doctor", "rotate-key")


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit code (2 for usage errors, 1 when a call fails)."""
    try:
        return _main(argv)
    except BrokenPipeError:  # e.g. `autoimport contacts list ... | head`: not an error to show
        # Python flushes stdout again at exit: point it at /dev/null, or that fails too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "scheduler":  # a client of the server, configured as the CLI is
            return run_scheduler(args)
        if args.command == "run":
            from service.run import run

            return run(args)
        if args.command not in SERVER_COMMANDS:
            return client_cli.run(args)
    except SystemExit as exit_:  # argparse: --help, and usage errors
        return exit_.code if isinstance(exit_.code, int) else 2
    return run_server_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoimport", description=__doc__)
    client_cli.add_client_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the gRPC server (configured by AUTOIMPORT_* variables)")
    projector = commands.add_parser(
        "projector",
        help="keep the read models up to date, as a process of its own "
        "(then run servers with AUTOIMPORT_RUN_PROJECTIONS=no)",
    )
    projector.add_argument(
        "--supervised",
        action="store_true",
        help="run as a server's child (what a server with AUTOIMPORT_RUN_PROJECTIONS=process "
        "starts): woken by lines on stdin, stopped by its end, health as JSON lines on stdout",
    )
    replay = commands.add_parser(
        "replay", help="rebuild the read model from every event (on the configured store)"
    )
    replay.add_argument(
        "--verify",
        action="store_true",
        required=True,
        help="compare the rebuild with the live read model; exit 1 and print the differences "
        "when they differ",
    )
    commands.add_parser(
        "rotate-key",
        help="re-encrypt every stored event under a new cipher key (AUTOIMPORT_NEW_CIPHER_KEY, "
        "or one generated into the data directory); stop every server and projector first",
    )
    commands.add_parser(
        "doctor",
        help="check the configuration, the store, the read model's lag, the scheduling and the "
        "connectors' URLs; exit 1 when something is wrong",
    )
    add_scheduler_command(commands)
    commands.add_parser(
        "run",
        help="run the server and the scheduler (two processes, stopped together by Ctrl-C), "
        "with a demo unless AUTOIMPORT_DEMO=0: what `make run` runs",
    )
    client_cli.add_client_commands(commands)
    return parser


def run_server_command(args: argparse.Namespace) -> int:
    logs.configure()  # JSON lines on stderr, readable ones on a terminal
    if args.command == "doctor":
        from service import doctor

        return doctor.run(sys.stdout)
    try:
        settings = Settings.from_env()
        logs.hide_secrets_of(settings)
        if args.command == "serve":
            from service.server import serve

            serve(settings)
        elif args.command == "projector" and args.supervised:
            from service.projector_process import run_child

            run_child(settings)
        elif args.command == "projector":
            from service.projector import run_projector

            run_projector(settings)
        elif args.command == "replay":
            from service.replay import verify

            return verify(settings, sys.stdout)
        elif args.command == "rotate-key":
            from service import rotate_key

            return rotate_key.run(settings, dict(os.environ), sys.stdout)
    except ConfigError as e:
        print(f"autoimport: {e}", file=sys.stderr)
        return 2
    except (psycopg.OperationalError, OperationalError, InterfaceError) as e:
        # The store is down or unreachable (a database restarting): one line, not a traceback;
        # a supervised projector is started again by its server.
        print(f"autoimport: the store cannot be reached ({first_line(e)}): retry", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`autoimport run`, what `make run` runs: the server and the scheduler, two processes as in
production, under a small supervisor; and, unless AUTOIMPORT_DEMO=0, the demo (service/demo.py).

The supervisor starts `autoimport serve`, waits until its health check says SERVING, sets up the
demo through the API, then starts `autoimport scheduler` against it (with the metrics port after
the server's). Both run the code this process runs, with its environment; their logs go to the
terminal as they are. Each child has a process group of its own, so that a Ctrl-C reaches the
supervisor only and it stops them in order: SIGTERM to the scheduler, then to the server (which
finishes its calls in flight), then SIGKILL to what is still there after a while (at once on a
second Ctrl-C). SIGINT, SIGTERM and SIGHUP all stop it so. When a child exits by itself, the
supervisor stops the other and exits 1. On Linux each child also gets SIGTERM if the supervisor
itself dies (killed with SIGKILL, say), so that none is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import service
from service import client_cli, demo
from service.client_output import error_lines
from service.config import ConfigError, metrics_listen, sync_interval

PREFIX = "autoimport run:"
START_TIMEOUT = 60.0  # seconds for the server to answer its health check
STOP_TIMEOUT = 20.0  # seconds each child gets to stop (its own grace is 10 s) before SIGKILL
LISTENING = re.compile(r"listening on (\S+)")
# Where this process's code is: the children run the same (a checkout run with another
# checkout's virtualenv imports its own code, not the one installed).
CODE_ROOT = Path(service.__file__).resolve().parent.parent


class Child:
    """`python -m service.cli <command>` in a process group of its own; its stdout copied to ours
    line by line (and each line given to `on_line`) when `on_line` is given, else inherited."""

    def __init__(
        self,
        name: str,
        command: str,
        env: dict[str, str],
        on_line: Callable[[str], None] | None = None,
    ):
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if on_line else None,
            text=True,
            process_group=0,
            preexec_fn=_die_with_parent(),
        )
        if on_line is not None:
            threading.Thread(
                target=self._copy, args=(on_line,), name=f"{name}-stdout", daemon=True
            ).start()

    def _copy(self, on_line: Callable[[str], None]) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # to its end: a full pipe would block the child
            on_line(line)
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except (OSError, ValueError):  # our stdout is gone: keep draining theirs
                pass

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout: float, hurry: threading.Event) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds or once `hurry` is set; the exit code,
        None when it had exited already."""
        if self.process.poll() is not None:
            return None
        self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline and not hurry.is_set():
            hurry.wait(0.05)
        if self.process.poll() is None:
            say(f"the {self.name} (pid {self.pid}) is still there: killing it")
            self.process.kill()
        return self.process.wait()


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a function for Popen's preexec_fn that makes the child receive SIGTERM when this
    process dies (prctl PR_SET_DEATHSIG); it does nothing but that system call, as it runs
    between fork and exec. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    prctl, parent = libc.prctl, os.getpid()
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before that: stop now
            os.kill(os.getpid(), signal.SIGTERM)

    return set_death_signal


def say(message: str, stream: TextIO | None = None) -> None:
    """One line of the supervisor's."""
    _write(f"{PREFIX} {message}", stream)


def _write(line: str, stream: TextIO | None = None) -> None:
    """Never fails: stopping the children must not."""
    with contextlib.suppress(OSError, ValueError):  # the terminal or the pipe is gone
        print(line, file=stream or sys.stdout, flush=True)


def _interactive() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def demo_enabled(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get("AUTOIMPORT_DEMO", "").strip().lower() not in ("0", "no", "false", "off")


def scheduler_metrics(server: tuple[str, int] | None) -> str:
    """The scheduler's AUTOIMPORT_METRICS_LISTEN: the port after the server's (one host, two
    processes), any free one when the server's is, off when the server's is."""
    if server is None:
        return "off"
    host, port = server
    return f"{host}:{port + 1 if port else 0}"


def run(args: argparse.Namespace | None = None) -> int:
    """Runs until SIGINT, SIGTERM or SIGHUP (0), or until a child exits by itself (1)."""
    stopping = threading.Event()  # a signal asked us to stop
    hurry = threading.Event()  # a second one: kill the children now
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        if stopping.is_set():
            hurry.set()
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(CODE_ROOT), env.get("PYTHONPATH"))))
    env.setdefault("PYTHONUNBUFFERED", "1")
    with_demo = demo_enabled(env)
    shop = None
    try:
        if with_demo:
            env.setdefault("AUTOIMPORT_SYNC_INTERVAL", demo.INTERVAL)
            interval = sync_interval(env)
            shop = demo.start_shop(interval)
            env["AUTOIMPORT_SHOPIFY_URL"] = shop.url  # every Shopify import reads the emulator
        server_metrics = metrics_listen(env)
    except ConfigError as e:
        say(str(e), sys.stderr)
        return 2
    children: list[Child] = []
    try:
        return _supervise(env, with_demo, shop, server_metrics, children, stopping)
    finally:
        # The scheduler first (it would only find the server gone), then the server.
        if children:
            say("stopping" + (" (Ctrl-C again to kill them now)" if _interactive() else ""))
        for child in reversed(children):
            code = child.stop(STOP_TIMEOUT, hurry)
            if code not in (None, 0, -signal.SIGTERM):
                say(f"the {child.name} exited with code {code}", sys.stderr)
        if shop is not None:
            shop.stop()
        if children:
            say("stopped")


def _supervise(
    env: dict[str, str],
    with_demo: bool,
    shop: demo.Shop | None,
    server_metrics: tuple[str, int] | None,
    children: list[Child],
    stopping: threading.Event,
) -> int:
    listening = threading.Event()
    address: list[str] = []

    def on_server_line(line: str) -> None:
        if not address and (match := LISTENING.search(line)):
            address.append(match.group(1))
            listening.set()

    if shop is not None:
        say(
            f"demo: Shopify emulator for shop {demo.SHOP!r} at {shop.url}: "
            f"{demo.CUSTOMERS} customers, {shop.without_valid_email} without a valid email, "
            f"{shop.opted_out} opted out of email"
        )
    server = Child("server", "serve", env, on_line=on_server_line)
    children.append(server)
    say(f"server started (pid {server.pid})")
    deadline = time.monotonic() + START_TIMEOUT
    while not listening.wait(0.1):
        if stopping.is_set():
            return 0
        if server.exited() is not None or time.monotonic() > deadline:
            say("the server did not start", sys.stderr)
            return 1
    set_up: demo.DemoImport | None = None
    paused: str | None = None
    with client_cli.open_channel(address[0], env.get("AUTOIMPORT_CA_CERT") or None) as channel:
        if not _wait_serving(channel, server, stopping, deadline):
            return 0 if stopping.is_set() else 1
        # AUTOIMPORT_TOKEN or AUTOIMPORT_ADMIN_TOKEN, else the file the server has written.
        token = client_cli.client_token(None)
        try:
            if with_demo:
                set_up = demo.set_up(channel, token)
            else:
                paused = demo.pause(channel, token)
        except grpc.RpcError as e:
            say(f"cannot set up the demo: {'; '.join(error_lines(e))}", sys.stderr)
            return 1
    scheduler_env = {
        **env,
        "AUTOIMPORT_ADDRESS": address[0],
        "AUTOIMPORT_METRICS_LISTEN": scheduler_metrics(server_metrics),
    }
    scheduler = Child("scheduler", "scheduler", scheduler_env)
    children.append(scheduler)
    say(f"scheduler started (pid {scheduler.pid})")
    if set_up is not None:
        _show_demo(set_up, address[0], env)
    elif paused:
        say(
            f"paused the demo's import {paused}: it reads the demo's emulator, not there with "
            "AUTOIMPORT_DEMO=0 (a run with the demo resumes it)"
        )
    say("Ctrl-C stops everything")
    while not stopping.wait(0.2):
        for child in children:
            code = child.exited()
            if code is not None:
                say(f"the {child.name} (pid {child.pid}) exited with code {code}", sys.stderr)
                return 1
    return 0


def _wait_serving(
    channel: grpc.Channel, server: Child, stopping: threading.Event, deadline: float
) -> bool:
    health = health_pb2_grpc.HealthStub(channel)
    while not stopping.is_set():
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return True
        except grpc.RpcError:
            pass
        if server.exited() is not None or time.monotonic() > deadline:
            say("the server does not answer its health check", sys.stderr)
            return False
        stopping.wait(0.1)
    return False


def _show_demo(set_up: demo.DemoImport, address: str, env: dict[str, str]) -> None:
    how = "created" if set_up.created else "found from an earlier run"
    if set_up.resumed:
        how += ", resumed"
    say(
        f"demo: account {demo.ACCOUNT!r} (contact limit {demo.CONTACT_LIMIT}), import "
        f"{set_up.name} ({how}), synced every {env['AUTOIMPORT_SYNC_INTERVAL']} s by the "
        "scheduler: 500 contacts a window (CAPPED), then LIMIT_REACHED, then what changes"
    )
    cli = "autoimport"
    if address != client_cli.DEFAULT_ADDRESS:
        cli += f" --address {address}"
    say("look with the CLI (.venv/bin/autoimport), in another terminal:")
    for command in (
        f"imports syncs {set_up.name}",
        f"contacts list --account {demo.ACCOUNT}",
        f"imports history {set_up.name}",
    ):
        _write(f"    {cli} {command}")

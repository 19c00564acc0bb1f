"""The server's projector as a child process (AUTOIMPORT_RUN_PROJECTIONS=process, the default).

Saving events and projecting them are both CPU-bound Python: in one process they share one GIL,
so a CSV import's saves and the projector's batches take turns on one core. A child process
(`python -m service.cli projector --supervised`, this interpreter and this code) projects on
the second core. The two talk over the child's standard streams:

- its stdin: the server writes a byte after each save, to wake it at once (on SQLite; on
  PostgreSQL the NOTIFY of each insert wakes it, and it polls as a fallback). The end of stdin
  stops the child: a server that dies, even by SIGKILL, closes it, so that no orphan keeps
  the projector's lease;
- its stdout: one JSON line, `{"failure": ...}`, when it starts and each time its projection
  fails or recovers, which the server turns into its health (`autoimport.projector`);
- its stderr is the server's: its log lines go where the server's go, in the same format.

ProjectorProcess, the server's side, restarts a child that exits while the server runs (a
crash, the OOM killer, SIGKILL) after a pause that doubles while it keeps exiting, as the
projector restarts a crashed projection; the view resumes from its tracking record, so the
events saved meanwhile are applied once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import service
from service import logs
from service.config import Settings
from service.projector import MAX_PAUSE, RETRY_INTERVAL, Projector
from service.stores import prepare_store

log = logging.getLogger(__name__)

STOP_TIMEOUT = 15.0  # seconds a child gets to finish its batch and exit before SIGKILL
# Where this process's code is: the child runs the same, whatever the current directory.
CODE_ROOT = Path(service.__file__).resolve().parent.parent


class ProjectorProcess:
    """The projector in a child process, with Projector's interface for the server: start,
    nudge, stop, and `failure` (why the read model is not advancing, while it is not)."""

    def __init__(self, settings: Settings, on_health: Callable[[str | None], None] | None = None):
        """`on_health(failure)`: told when the projection starts failing, or the child exited,
        and when it runs again (None)."""
        self._settings = settings
        self._on_health = on_health
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # the child's stdin: nudges against a stop or restart
        self._process: subprocess.Popen[bytes] | None = None
        self._stdin: IO[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.failure: str | None = None
        self.restarting = False  # the child exited and is being restarted

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        process = self._spawn()
        self._thread = threading.Thread(
            target=self._supervise, args=(process,), name="projector-process", daemon=True
        )
        self._thread.start()

    def nudge(self, *_: Any) -> None:
        """Events were saved: wake the child. Called by every save, so it never blocks: a full
        pipe means that wake-ups are pending already, and a child gone is the supervisor's."""
        with self._lock:
            if self._stdin is None:
                return
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(self._stdin.fileno(), b"\n")

    def stop(self) -> None:
        """Closes the child's stdin (it finishes its batch and exits), waits for it, and kills
        it if it does not exit in time."""
        with self._lock:
            self._stopping.set()  # under the lock: no child is spawned after this
            self._close_stdin()
            process = self._process
        if process is not None:
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("the projector process (pid %d) did not stop: killing it", process.pid)
                process.kill()  # it ignores SIGTERM: its life is this process's (see run_child)
                process.wait()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT)

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._stopping.is_set():
                return None
            process = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "projector", "--supervised"],
                env=child_env(self._settings),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,  # its health; its stderr is ours
            )
            assert process.stdin is not None
            os.set_blocking(process.stdin.fileno(), False)
            self._process, self._stdin = process, process.stdin
        log.info("started the projector process (pid %d)", process.pid)
        return process

    def _supervise(self, process: subprocess.Popen[bytes] | None) -> None:
        """Follows the child's health until it exits; restarts it while the server runs."""
        pause = RETRY_INTERVAL
        while process is not None:
            started = time.monotonic()
            self._follow(process)
            code = process.wait()
            with self._lock:
                self._close_stdin()
            if self._stopping.is_set():
                return
            pause = RETRY_INTERVAL if time.monotonic() - started > MAX_PAUSE else pause
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            log.error(
                "the projector process (pid %d) exited (%s): every read waits for the read "
                "model meanwhile; restarting it in %.1f s",
                process.pid,
                how,
                pause,
            )
            self.restarting = True
            self._health(f"the projector process exited ({how})")
            process, pause = self._restart(pause)

    def _restart(self, pause: float) -> tuple[subprocess.Popen[bytes] | None, float]:
        """A new child after `pause` (None when stopped meanwhile), and the next pause."""
        while not self._stopping.wait(pause):
            pause = min(pause * 2, MAX_PAUSE)
            try:
                return self._spawn(), pause
            except OSError as e:  # no memory or file descriptors left to fork, say
                log.error("cannot start the projector process (%s); trying in %.1f s", e, pause)
        return None, pause

    def _follow(self, process: subprocess.Popen[bytes]) -> None:
        """Reads the child's health lines until its stdout ends (it exited)."""
        assert process.stdout is not None
        for line in process.stdout:
            try:
                failure = json.loads(line)["failure"]
            except (ValueError, KeyError, TypeError):
                log.warning("the projector process wrote: %s", line.decode(errors="replace"))
                continue
            if failure is None:
                self.restarting = False  # it runs (again)
            self._health(failure)
        process.stdout.close()

    def _close_stdin(self) -> None:
        """Under the lock: a nudge must never write to a closed (and perhaps reused) fd."""
        if self._stdin is not None:
            self._stdin.close()  # nothing to flush: every write went straight to the fd
            self._stdin = None

    def _health(self, failure: str | None) -> None:
        if failure != self.failure:
            self.failure = failure
            if self._on_health is not None:
                self._on_health(failure)


def child_env(settings: Settings) -> dict[str, str]:
    """The child's environment: this one without its AUTOIMPORT_* variables (the settings may
    not come from them), plus those of `settings` that the projector reads, and this process's
    code and log format."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOIMPORT_")}
    env.update(settings.projector_env())
    env["AUTOIMPORT_LOG_FORMAT"] = logs.current_format()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(CODE_ROOT), env.get("PYTHONPATH"))))
    return env


def run_child(settings: Settings) -> None:
    """`autoimport projector --supervised`: a server's child. Runs every view until its stdin
    ends, each line read waking the projector."""
    # Its life is the server's: a Ctrl-C at a terminal, or SIGTERM to the service's whole
    # process group, is for the server, which stops the child in order once its calls end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    prepare_store(settings)
    _tell_server(None)  # running: the server's health may say SERVING again after a restart
    projector = Projector(settings, on_health=_tell_server)
    projector.start()
    try:
        while os.read(sys.stdin.fileno(), 4096):
            projector.nudge()
    except OSError:  # a stdin that cannot be read is one that ended
        pass
    projector.stop()


_told = threading.Lock()  # one line at a time: each projection has a thread


def _tell_server(failure: str | None) -> None:
    with _told:
        try:
            sys.stdout.write(json.dumps({"failure": failure}) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):  # the server is gone: stdin ends next
            pass

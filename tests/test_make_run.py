"""`make run` from a fresh clone (issue 9): the server and the scheduler start, the demo's first
sync comes within a minute, the CLI lists the demo's contacts, and a Ctrl-C (SIGINT to the
foreground process group, as a terminal sends it) stops every process cleanly.

The clone is of this repository's committed HEAD, run with `VENV=` this test's virtualenv, so
that nothing is installed; it serves on free ports (AUTOIMPORT_LISTEN and
AUTOIMPORT_METRICS_LISTEN port 0), so that it runs beside anything else. About 10 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autoimport.v1 import imports_pb2 as pb
from tests.support import ROOT, Client, wait_for

pytestmark = pytest.mark.timeout(120)
FIRST_SYNC_WITHIN = 60.0  # seconds from `make run`: the promise


def require(tool: str) -> None:
    """Skipped without `tool`, except on CI (CI=true), where the test is required: it fails."""
    if shutil.which(tool):
        return
    message = f"`make run`'s smoke test needs {tool}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class Output:
    """Every line a process writes (stdout and stderr), read as it comes."""

    def __init__(self, process: subprocess.Popen[str]):
        self.lines: list[str] = []
        self._process = process
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def search(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of `pattern` in the output, waited for (not past the process's end)."""
        deadline = time.monotonic() + timeout
        while True:
            ended = self._process.poll() is not None
            if found := re.search(pattern, self.text()):
                return found
            if ended or time.monotonic() > deadline:
                pytest.fail(f"no {pattern!r} in the output of make run:\n{self.text()}")
            time.sleep(0.05)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def processes_in(folder: Path) -> list[int]:
    """The processes whose working directory is `folder` or below (Linux; [] elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            found.append(int(entry.name))
    return found


def test_make_run_from_a_fresh_clone(tmp_path: Path) -> None:
    require("git")
    require("make")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=60)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOIMPORT_")}
    for variable in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):  # when the suite runs under make
        env.pop(variable, None)
    env.update(AUTOIMPORT_LISTEN="127.0.0.1:0", AUTOIMPORT_METRICS_LISTEN="127.0.0.1:0")
    started = time.monotonic()
    make = subprocess.Popen(
        ["make", "run", f"VENV={sys.prefix}"],  # this virtualenv, as it is: no install
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a shell's foreground job
    )
    output = Output(make)
    children: list[int] = []
    try:
        address = output.search(r"autoimport listening on (\S+)", timeout=30).group(1)
        children.append(int(output.search(r"server started \(pid (\d+)\)", 5).group(1)))
        demo = output.search(r"import (accounts/demo/imports/\S+) \(created\)", timeout=30)
        children.append(int(output.search(r"scheduler started \(pid (\d+)\)", 5).group(1)))
        name = demo.group(1)

        # The demo's first sync, scheduled with no other caller: 500 contacts into the account
        # (its window's budget), the rest deferred to the next window.
        token = (clone / "data" / "admin.token").read_text().strip()
        with Client(address, token) as admin:
            syncs = wait_for(
                lambda: admin.imports.ListSyncs(pb.ListSyncsRequest(name=name)).syncs,
                lambda syncs: bool(syncs) and syncs[-1].HasField("end_time"),
                timeout=FIRST_SYNC_WITHIN - (time.monotonic() - started),
            )
        first = syncs[-1]
        assert first.outcome == pb.SyncReport.CAPPED, first
        # 500 a window; a sync that crosses into the next window also takes some of its budget.
        assert first.added >= 500 and first.deferred > 0, first
        assert first.skipped_missing_email + first.skipped_invalid_email > 0, first
        # The server's line of that sync (JSON: the output is not a terminal).
        line = output.search(r'\{[^\n]*"event": "sync_finished"[^\n]*\}', timeout=5).group(0)
        assert json.loads(line)["outcome"] == "CAPPED"

        # The CLI, as the README shows it, from the clone (the admin token in ./data).
        cli = [f"{sys.prefix}/bin/python", "-m", "service.cli", "--address", address]
        listed = subprocess.run(
            [*cli, "contacts", "list", "--account", "demo"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith("EMAIL "), listed.stdout[:500]
        total = re.search(r"^(\d+) contacts$", listed.stdout, re.MULTILINE)
        assert total is not None and int(total.group(1)) >= 500, listed.stdout[-500:]
        assert " UNSUBSCRIBED " in listed.stdout  # opted out at the shop: added unsubscribed
        assert children and all(alive(pid) for pid in children)

        # Ctrl-C: every process stops, cleanly.
        os.killpg(make.pid, signal.SIGINT)
        code = make.wait(timeout=40)
        text = output.text()
        assert code in (0, -signal.SIGINT), f"make run exited with {code}:\n{text}"
        assert "autoimport run: stopped" in text, text
        assert "Traceback" not in text and "make: ***" not in text, text
        wait_for(lambda: [pid for pid in children if alive(pid)], lambda left: not left, 10)
        assert not [pid for pid in processes_in(clone) if alive(pid)]
    finally:
        # Nothing left behind, even when the test failed: make and the supervisor (one process
        # group), and the children (one each).
        for group in (make.pid, *children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        make.wait(timeout=10)

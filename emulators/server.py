"""What every emulator shares: a threaded HTTP/1.1 server on 127.0.0.1 that answers JSON, the
record of every request, scripted faults, the record of retries made too early, and `main()`.

An emulator implements `respond(request)`, its service's faithful behaviour (wire format, error
bodies, quotas); it calls `take_fault(request)` where the service would fail (after its own
authentication and quota checks), and `hold_off(until)` when it throttles without a
Retry-After. The base records each request before `respond` sees it, and each one that arrives
while the emulator holds the client off (after a 429) in `early_retries`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

# An answer: HTTP status, headers, and the body to send as JSON. Status DROP: the connection is
# closed without an answer.
Answer = tuple[int, dict[str, str], Any]
DROP = 0


@dataclass
class Request:
    """One request as the emulator received it."""

    at: float  # wall clock
    monotonic: float
    method: str
    path: str
    query: dict[str, str]  # the last value of each parameter
    params: dict[str, list[str]]  # every value of each parameter
    headers: Message  # read case-insensitively
    body: Any  # the JSON body decoded; else its text ("" when none)
    size: int  # of the body, in bytes
    status: int = 0  # of the answer; DROP for a dropped connection


@dataclass
class Fault:
    """A failure to give, once, instead of the next matching request's answer: a status with
    its headers and body, or a dropped connection. `path`: only requests to that path; None:
    the requests the emulator's `faultable` names (by default all)."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # sent as JSON; bytes are sent as they are (HTML, JSON cut short)
    drop: bool = False
    path: str | None = None
    skip: int = 0  # matching requests answered normally first (a fault in the middle of a read)
    stall: float = 0.0  # seconds before the answer (a page that never ends, for its client)

    @classmethod
    def dropped(cls, path: str | None = None) -> Fault:
        """The connection is closed without an answer (a proxy or the service went away)."""
        return cls(DROP, drop=True, path=path)

    def answer(self) -> Answer:
        time.sleep(self.stall)
        return DROP if self.drop else self.status, dict(self.headers), self.body


@dataclass
class LoopbackEmulator:
    """Serves `answer()` on loopback; `with emulator:` starts it on a free port and stops it.
    The emulators are dataclasses; `_server` and `last_headers` are plain class defaults, set
    per instance once it serves."""

    requests: list[Request] = field(default_factory=list)
    # Requests that arrived while the emulator held the client off: sooner than a 429's
    # Retry-After, or than `min_backoff` after a 429 without one, or in a throttled window.
    early_retries: list[Request] = field(default_factory=list)
    # Failures to give first, in order (see Fault); a (status, headers, body) tuple is a Fault.
    faults: list[Fault] = field(default_factory=list)
    # A request sooner than this after a 429 is an early retry (a client must back off).
    min_backoff: float = 0.0
    delay: float = 0.0  # seconds each answer takes (a slow service)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _not_before: float = 0.0  # monotonic: a request before this is an early retry

    _server: ThreadingHTTPServer | None = None
    # The headers of the latest request (e.g. to check the User-Agent a client sends).
    last_headers: Message | None = None

    # -- what an emulator provides ------------------------------------------------------------

    def respond(self, request: Request) -> Answer:
        """The service's answer to one request (called under `lock`, the request recorded)."""
        raise NotImplementedError

    def faultable(self, request: Request) -> bool:
        """The requests that faults without a path, and the hold-offs, apply to."""
        return True

    # -- faults and throttling ----------------------------------------------------------------

    def take_fault(self, request: Request) -> Fault | None:
        """The first scripted fault that matches the request, removed from the queue."""
        with self.lock:
            for n, fault in enumerate(self.faults):
                if not isinstance(fault, Fault):
                    fault = Fault(*fault)
                if (fault.path is None and self.faultable(request)) or fault.path == request.path:
                    if fault.skip:
                        self.faults[n] = replace(fault, skip=fault.skip - 1)
                        return None
                    del self.faults[n]
                    return fault
            return None

    def fail(self, *faults: Fault) -> None:
        """Queues faults after those already queued."""
        with self.lock:
            self.faults.extend(faults)

    def hold_off(self, until: float) -> None:
        """Requests before `until` (monotonic) are early retries."""
        with self.lock:
            self._not_before = max(self._not_before, until)

    def held_off(self, request: Request) -> bool:
        return request.monotonic < self._not_before

    # -- one request --------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: Message, body: bytes) -> Answer:
        """Records the request, then answers it with `respond`."""
        time.sleep(self.delay)
        parts = urlsplit(target)
        params = parse_qs(parts.query, keep_blank_values=True)
        text = body.decode(errors="replace")
        try:
            decoded: Any = json.loads(text) if text else ""
        except ValueError:
            decoded = text
        with self.lock:
            request = Request(
                time.time(),
                time.monotonic(),
                method,
                parts.path,
                {k: v[-1] for k, v in params.items()},
                params,
                headers,
                decoded,
                len(body),
            )
            self.requests.append(request)
            if self.faultable(request) and self.held_off(request):
                self.early_retries.append(request)
            status, reply_headers, reply = self.respond(request)
            request.status = status
            if status == 429 and self.faultable(request):
                wait = max(self.min_backoff, float(reply_headers.get("Retry-After", 0) or 0))
                self.hold_off(request.monotonic + wait)
            if isinstance(reply, bytes):
                return status, reply_headers, reply
            return status, reply_headers, json.loads(json.dumps(reply))

    def recorded(self, path: str | None = None) -> list[Request]:
        """The requests received (to `path` only, when given)."""
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]

    # -- serving ------------------------------------------------------------------------------

    def start(self, port: int = 0) -> Self:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # A response's headers and body go out as two writes: with Nagle's algorithm on,
            # the body waited for the client's delayed ACK, 40 ms on every request after a
            # keep-alive connection's first (a stall the real APIs do not have).
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                self._reply("GET")

            def do_POST(self) -> None:
                self._reply("POST")

            def _reply(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                emulator.last_headers = self.headers
                status, headers, answer = emulator.answer(method, self.path, self.headers, body)
                if status == DROP:
                    self.close_connection = True  # closed without a word
                    return
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                headers = {"Content-Type": "application/json; charset=utf-8", **headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                # The client may have given up waiting (e.g. at its deadline).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests read the emulator's record of requests instead

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


E = TypeVar("E", bound=LoopbackEmulator)


def main(
    doc: str,
    port: int,
    build: Callable[[argparse.Namespace], E],
    describe: Callable[[E], Sequence[str]],
    arguments: Callable[[argparse.ArgumentParser], object] = lambda parser: None,
) -> None:
    """`python -m emulators.<service>`: serves one emulator alone until Ctrl-C. `build` makes
    it, seeded, from the arguments (--port, --contacts, and those `arguments` adds); `describe`
    says how to reach it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--contacts", type=int, default=1000)
    arguments(parser)
    args = parser.parse_args()
    emulator = build(args)
    emulator.start(args.port)
    for line in describe(emulator):
        print(line, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        emulator.stop()

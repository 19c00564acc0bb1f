"""What every emulator shares: a threaded HTTP/1.1 server on 127.0.0.1 that answers JSON."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

# An answer: HTTP status, headers, and the body to send as JSON.
Answer = tuple[int, dict[str, str], Any]


class LoopbackEmulator(ABC):
    """Serves `answer()` on loopback; `with emulator:` starts it on a free port and stops it.
    The emulators are dataclasses: these attributes are plain class defaults, set per instance
    once it serves."""

    _server: ThreadingHTTPServer | None = None
    # The headers of the latest request (e.g. to check the User-Agent a client sends).
    last_headers: Message | None = None

    @abstractmethod
    def answer(self, method: str, target: str, headers: Message, body: bytes) -> Answer:
        """The answer to one request: `target` is its path and query string; `headers` are
        read case-insensitively."""

    def start(self, port: int = 0) -> Self:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._reply("GET")

            def do_POST(self) -> None:
                self._reply("POST")

            def _reply(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                emulator.last_headers = self.headers
                status, headers, answer = emulator.answer(method, self.path, self.headers, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
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

"""One service's emulator in a subprocess of its own, driven through the service's contract
harness (tests/connectors/harness_<service>.py), for bench/sync.py.

`python -m bench.emulated SERVICE CONTACTS` seeds CONTACTS contacts (valid emails, changed long
ago) and prints one JSON line: the emulator's URL, the server settings that point at it, and the
import message (base64 protobuf). Then it obeys one command a line on stdin, answering one JSON
line each, until stdin closes:
  change N   N contacts change at the source (a new first name); their settling begins
  settle     returns once those changes are within a sync's bound (past the connector's lag)
  requests   every request received since the last `requests`, as recorded by the emulator
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from typing import Any

from tests.connectors.contract import harness_of


def serve(service: str, contacts: int) -> None:
    with harness_of(service)(end_to_end=True) as harness:  # type: ignore[call-arg]
        ids = harness.seed(contacts)
        emulator = harness.emulator
        hello = {
            "url": emulator.url,
            "server_env": harness.server_env(),
            "import": base64.b64encode(harness.import_message().SerializeToString()).decode(),
        }
        answer(hello)
        settling = threading.Thread()
        seen = 0
        for round_, line in enumerate(sys.stdin):
            command, _, argument = line.strip().partition(" ")
            if command == "change":
                for external_id in ids[: int(argument)]:
                    harness.rename(external_id, f"Changed{round_}")
                settling = threading.Thread(target=harness.settle)
                settling.start()
                answer({"changed": int(argument)})
            elif command == "settle":
                if settling.ident is not None:
                    settling.join()
                answer({"settled": True})
            elif command == "requests":
                with emulator.lock:
                    new, seen = emulator.requests[seen:], len(emulator.requests)
                answer([request_of(r) for r in new])
            else:
                raise SystemExit(f"unknown command {line!r}")


def request_of(request: Any) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "params": request.params,
        "headers": list(request.headers.items()),
        "body": request.body,
        "status": request.status,
    }


def answer(value: Any) -> None:
    print(json.dumps(value), flush=True)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))

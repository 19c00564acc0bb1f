"""The benchmark's baseline: a bare gRPC echo server (`python -m bench.echo_server`).

It has the real server's shape (grpcio sync server, a pool of service.server.WORKERS threads) but
nothing else: one unary method returns the request's bytes untouched, with no protobuf, no
interceptors and no storage. It prints its port, then serves until its standard input closes, so
it never outlives the benchmark that started it.
"""

from __future__ import annotations

import sys
from concurrent import futures
from typing import Any

import grpc

from service.server import WORKERS

SERVICE = "bench.Echo"
METHOD = "Echo"
PATH = f"/{SERVICE}/{METHOD}"


def _echo(request: bytes, context: Any) -> bytes:
    return request


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS))
    # No (de)serializers: requests and responses are the raw bytes.
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or exits)
    server.stop(grace=None)


if __name__ == "__main__":
    main()

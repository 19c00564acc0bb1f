"""Latency benchmark of the service against a bare gRPC echo server (`make bench`)."""

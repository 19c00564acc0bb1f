"""The running service: the event-sourced application, read models, gRPC API, CLI."""

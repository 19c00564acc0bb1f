"""The gRPC entry points: servicers translate protobuf to use cases, interceptors do the rest."""

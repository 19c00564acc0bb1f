"""Generated gRPC stubs of protos/autoimport/v1 (make protos). Do not edit."""

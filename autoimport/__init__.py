"""The autoimport.v1 API: generated from protos/ by `make protos`."""

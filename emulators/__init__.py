"""Emulators of the external services' HTTP APIs, served on loopback: for the tests, the
benchmarks, and `make run`'s demo (service/demo.py). A package of their own, outside tests/, as
the demo ships with the product and product code never imports tests; they need only the
standard library, and import nothing of the service."""

"""Emulators of the external services' HTTP APIs, served on loopback for tests."""

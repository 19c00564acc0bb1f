"""Fault injection against real server processes: seeded, reproducible (AUTOIMPORT_FAULT_SEED),
a subset in `make test` and all of it in `make test-faults` (AUTOIMPORT_FAULT_KILLS=30)."""

from __future__ import annotations

import os

SEED = int(os.environ.get("AUTOIMPORT_FAULT_SEED", "20261202"))
KILLS = int(os.environ.get("AUTOIMPORT_FAULT_KILLS", "6"))  # kill points per store

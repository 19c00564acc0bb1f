"""Fault injection against real server processes: seeded and reproducible (AUTOIMPORT_FAULT_SEED
picks the kill moments and the sample of cases). `make test` runs a subset; `make test-faults`
(AUTOIMPORT_FAULTS=all) runs every case, with 30 kill points a store."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

SEED = int(os.environ.get("AUTOIMPORT_FAULT_SEED", "20261202"))
ALL = os.environ.get("AUTOIMPORT_FAULTS", "") == "all"
KILLS = int(os.environ.get("AUTOIMPORT_FAULT_KILLS", "30" if ALL else "6"))  # kill points a store


def sample(cases: Sequence[T], k: int) -> list[T]:
    """Every case with AUTOIMPORT_FAULTS=all, else `k` of them chosen by the seed."""
    if ALL or k >= len(cases):
        return list(cases)
    return sorted(random.Random(SEED).sample(list(cases), k))  # type: ignore[type-var]

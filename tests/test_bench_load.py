"""bench/load.py's verdict on a soak's samples: flat after its warm-up, or growing."""

from __future__ import annotations

from bench.load import Samples, flatness


def soak(server_mib: list[float], fds: list[int] | None = None) -> Samples:
    """Samples every 15 s: the server's RSS and open files, a projector that stays put."""
    fds = fds or [36] * len(server_mib)
    return [
        (15.0 * n, {"server": (mib, fd), "projector": (72.0, 10)})
        for n, (mib, fd) in enumerate(zip(server_mib, fds, strict=True))
    ]


def test_a_warm_up_that_levels_off_is_flat_whatever_the_noise():
    rising = [75.0, 85.0, 92.0, 96.0, 98.0]  # the first quarter: warm-up
    level = [100.0, 104.0, 99.0, 101.0, 103.0, 98.0, 100.0, 105.0, 99.0, 101.0]
    plateau = soak(rising + level + level)

    verdict = flatness(plateau, "server")

    assert verdict.flat
    assert "server: flat" in verdict.line()
    assert flatness(plateau, "projector").flat


def test_steady_growth_after_the_warm_up_is_growing():
    leak = soak([75.0 + 2.0 * n for n in range(40)])  # 2 MiB every 15 s

    verdict = flatness(leak, "server")

    assert not verdict.flat
    assert verdict.growth_mib > 30
    assert 7.5 < verdict.mib_per_minute < 8.5
    assert "server: GROWING" in verdict.line()


def test_open_files_that_keep_opening_are_growing():
    files = soak([100.0] * 40, fds=[36 + n // 4 for n in range(40)])

    assert not flatness(files, "server").flat

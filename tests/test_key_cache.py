"""The TTL cache of API key lookups: nothing it gives is older than its TTL."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.key_cache import KEY_CACHE_TTL, TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_ttl_is_within_the_one_second_revocation_bound():
    assert 0 < KEY_CACHE_TTL < 1


@given(age=st.floats(min_value=0, max_value=10, allow_nan=False))
def test_a_value_is_given_only_while_younger_than_the_ttl(age: float):
    clock = Clock()
    cache: TtlCache[str, str] = TtlCache(ttl=0.5, clock=clock)
    cache.put("hash", "known")

    clock.now += age

    assert cache.get("hash") == ("known" if age < 0.5 else None)


def test_a_value_put_again_lives_from_then():
    clock = Clock()
    cache: TtlCache[str, str] = TtlCache(ttl=0.5, clock=clock)
    cache.put("hash", "old")
    clock.now += 0.4
    cache.put("hash", "new")
    clock.now += 0.4

    assert cache.get("hash") == "new"


def test_past_its_size_the_oldest_entries_go_first():
    cache: TtlCache[int, int] = TtlCache(maxsize=3, clock=Clock())
    for n in range(5):
        cache.put(n, n)

    assert [cache.get(n) for n in range(5)] == [None, None, 2, 3, 4]


def test_forget_values_drops_the_matching_entries_only():
    cache: TtlCache[str, str] = TtlCache(clock=Clock())
    cache.put("a", "key-1")
    cache.put("b", "key-2")

    cache.forget_values(lambda value: value == "key-1")

    assert (cache.get("a"), cache.get("b")) == (None, "key-2")

"""A cache fill that raced with a revocation must not bring the revoked entry back."""

from __future__ import annotations

from parley.services.auth import TtlCache


def test_a_drop_during_a_fill_discards_the_fill() -> None:
    cache = TtlCache(ttl=60)
    generation = cache.generation  # a reader notes the generation, then reads the database
    cache.drop(("app", "token-digest"))  # meanwhile the token is revoked
    cache.put(("app", "token-digest"), "stale", generation)  # the read finishes
    assert cache.get(("app", "token-digest")) is None


def test_a_fill_without_a_drop_is_kept_until_it_expires() -> None:
    cache = TtlCache(ttl=60)
    cache.put("key", "value", cache.generation)
    assert cache.get("key") == "value"
    expired = TtlCache(ttl=-1)
    expired.put("key", "value", expired.generation)
    assert expired.get("key") is None

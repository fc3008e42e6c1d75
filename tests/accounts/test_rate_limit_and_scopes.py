"""Rate windows per key and the narrowing of a new key's scopes (no network, a fake clock)."""

from __future__ import annotations

import pytest

from mlx_manager.accounts.rate_limit import RateLimiter
from mlx_manager.accounts.service import narrow
from mlx_manager.errors import PermissionDenied, RateLimited
from mlx_manager.security.principal import KeyScopes


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_slide() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    scopes = KeyScopes(rpm=2)
    limiter.admit(1, scopes)
    limiter.admit(1, scopes)
    with pytest.raises(RateLimited) as info:
        limiter.admit(1, scopes)
    assert info.value.headers["Retry-After"] == "60"
    limiter.admit(2, scopes)  # another key has its own window
    clock.now += 30
    with pytest.raises(RateLimited) as info:
        limiter.admit(1, scopes)
    assert info.value.headers["Retry-After"] == "30"
    clock.now += 30.5
    limiter.admit(1, scopes)


def test_tokens_per_minute_count_after_the_request() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    scopes = KeyScopes(tpm=100)
    limiter.admit(1, scopes)
    limiter.spend(1, 120)
    with pytest.raises(RateLimited, match="100 tokens per minute"):
        limiter.admit(1, scopes)
    clock.now += 61
    limiter.admit(1, scopes)


def test_unlimited_keys_keep_no_window() -> None:
    limiter = RateLimiter()
    for _ in range(1000):
        limiter.admit(1, KeyScopes())
    assert limiter._windows == {}


def test_a_new_key_is_never_wider_than_its_maker() -> None:
    maker = KeyScopes(models=("tiny-*",), rpm=10, local_only=True)
    assert narrow(maker, KeyScopes()) == KeyScopes(("tiny-*",), 10, None, True)
    assert narrow(maker, KeyScopes(models=("tiny-a",), rpm=50)).rpm == 10
    with pytest.raises(PermissionDenied, match="gpt-4o"):
        narrow(maker, KeyScopes(models=("gpt-4o",)))
    with pytest.raises(PermissionDenied, match="tiny-a"):  # a glob wider than it looks
        narrow(KeyScopes(models=("tiny-?",)), KeyScopes(models=("tiny-a*",)))
    assert narrow(maker, KeyScopes(models=("tiny-*",))).models == ("tiny-*",)
    unscoped = KeyScopes()
    assert narrow(unscoped, KeyScopes(models=("x",), tpm=5)) == KeyScopes(("x",), None, 5, False)


def test_model_patterns_are_globs_on_the_whole_name() -> None:
    scopes = KeyScopes(models=("tiny-*", "exact"))
    assert scopes.allows_model("tiny-a") and scopes.allows_model("exact")
    assert not scopes.allows_model("exactly") and not scopes.allows_model("a-tiny-b")

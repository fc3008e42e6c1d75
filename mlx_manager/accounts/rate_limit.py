"""Requests and tokens per minute per API key: a sliding one-minute window in memory.

Our own: a few deques per active key; a limiter library would bring a store (Redis) that a
single server does not need. A request is refused (429 + Retry-After) when the key's last
minute already holds `rpm` requests or `tpm` tokens; tokens are counted when a request ends.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mlx_manager.errors import RateLimited
from mlx_manager.security.principal import KeyScopes

WINDOW_S = 60.0


@dataclass(slots=True)
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0

    def trim(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW_S:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW_S:
            self.token_sum -= self.tokens.popleft()[1]


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[int, _Window] = {}

    def admit(self, key_id: int, scopes: KeyScopes) -> None:
        """Count a request, or RateLimited with the seconds until the window has room."""
        if scopes.rpm is None and scopes.tpm is None:
            return
        now = self._clock()
        window = self._windows.setdefault(key_id, _Window())
        window.trim(now)
        if scopes.rpm is not None and len(window.requests) >= scopes.rpm:
            wait = window.requests[0] + WINDOW_S - now
            raise _limited(f"this key's limit of {scopes.rpm} requests per minute", wait)
        if scopes.tpm is not None and window.token_sum >= scopes.tpm:
            wait = window.tokens[0][0] + WINDOW_S - now
            raise _limited(f"this key's limit of {scopes.tpm} tokens per minute", wait)
        window.requests.append(now)

    def spend(self, key_id: int, tokens: int) -> None:
        window = self._windows.get(key_id)
        if window is None or tokens <= 0:
            return
        window.tokens.append((self._clock(), tokens))
        window.token_sum += tokens


def _limited(what: str, wait_s: float) -> RateLimited:
    seconds = max(1, math.ceil(wait_s))
    return RateLimited(
        f"Rate limit reached: {what}; retry in {seconds}s.",
        headers={"Retry-After": str(seconds)},
    )

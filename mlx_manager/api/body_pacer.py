"""Large request bodies are read at one shared, bounded rate, so reading them cannot starve
everyone else of the event loop.

Reading a body costs the event loop CPU (uvicorn hands it over in 64 KiB pieces, each a few
Python calls; the giant-body screen scans each one). A handful of clients sending giant bodies
back to back kept the loop busy reading and took another request's time to first token to ~6x
its idle value (issue 14). Here the bytes past the first `free_bytes` of each body are drawn
from one token bucket shared by every connection: however many large bodies are in flight,
the loop reads at most `rate` bytes/s of them. While one waits its connection is not read
(uvicorn stops reading a transport whose body nobody takes) and TCP pushes back on the sender,
so the wait costs no CPU. Bodies under `free_bytes`, which is nearly every request, never wait.

Written here rather than taken from a library: the ASGI rate limiters limit requests per
client, not body bytes across all of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

MIB = 1024 * 1024


class BodyPacer:
    def __init__(
        self,
        rate_bytes_per_s: float,
        burst_bytes: int = 4 * MIB,
        free_bytes: int = MIB,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_bytes_per_s <= 0:
            raise ValueError("rate_bytes_per_s must be positive")
        self.rate = rate_bytes_per_s
        self.burst = burst_bytes
        self.free_bytes = free_bytes
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst_bytes)
        self._at = clock()

    async def pace(self, read_before: int, chunk: int) -> None:
        """Called after each chunk of a body: `read_before` bytes of it came earlier."""
        charged = min(chunk, read_before + chunk - self.free_bytes)
        if charged > 0:
            await self._take(charged)

    async def _take(self, size: int) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        # A deficit is a queue: each taker waits for the bytes booked before it and its own.
        self._tokens -= size
        if self._tokens < 0:
            await self._sleep(-self._tokens / self.rate)

"""The local provider: the model pool and the engine on this machine.

Each generation runs under `local_timeouts` (timed_stream.py). The first-token clock starts
when the request reaches the provider, so a model load and the wait for a queue slot count:
one that takes too long ends in a `LocalTimeout` before anything streamed, which a route's
chain fails over from (the load itself goes on, for the requests after it).
"""

from __future__ import annotations

import asyncio

from mlx_manager.config import LocalTimeouts
from mlx_manager.frontend.client import EngineClient
from mlx_manager.routing.providers.timed_stream import TimedStream, timeout_error
from mlx_manager.types import EventStream, GenerateRequest


class LocalProvider:
    name = "local"

    def __init__(self, client: EngineClient, timeouts: LocalTimeouts | None = None) -> None:
        self._client = client
        self._timeouts = timeouts or LocalTimeouts.model_validate({})

    async def submit(self, request: GenerateRequest) -> EventStream:
        t = self._timeouts
        started = asyncio.get_running_loop().time()
        first = min(t.first_token_s, t.total_s)
        timer = asyncio.timeout(first)
        try:
            async with timer:
                stream = await self._client.submit(request)
        except TimeoutError:
            if not timer.expired():
                raise
            what = "first token" if first == t.first_token_s else "whole answer"
            raise timeout_error(request.model, what, first) from None
        return TimedStream(stream, t, started, request.request_id, request.model)

    async def count_tokens(self, request: GenerateRequest) -> int:
        return await self._client.count_tokens(request)

"""The local provider: the model pool and the engine on this machine."""

from __future__ import annotations

from mlx_manager.frontend.client import EngineClient
from mlx_manager.types import EventStream, GenerateRequest


class LocalProvider:
    name = "local"

    def __init__(self, client: EngineClient) -> None:
        self._client = client

    async def submit(self, request: GenerateRequest) -> EventStream:
        return await self._client.submit(request)

    async def count_tokens(self, request: GenerateRequest) -> int:
        return await self._client.count_tokens(request)

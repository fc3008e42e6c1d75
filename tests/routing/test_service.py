"""GenerationService: the seam every generating route calls (fake provider, no model)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.service import GenerationService
from mlx_manager.security.principal import ANONYMOUS, STATIC_KEY
from mlx_manager.types import EventStream, GenerateRequest, GenerationEvent, SamplingParams


class _Stream:
    prompt_tokens = 3

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        yield GenerationEvent("r")

    def abort(self) -> None:
        pass


class RecordingProvider:
    name = "fake"

    def __init__(self) -> None:
        self.models: list[str] = []

    async def submit(self, request: GenerateRequest) -> EventStream:
        self.models.append(request.model)
        return _Stream()

    async def count_tokens(self, request: GenerateRequest) -> int:
        self.models.append(request.model)
        return 7


def request(model: str) -> GenerateRequest:
    return GenerateRequest("r", model, SamplingParams(), prompt_text="hi")


def test_aliases_are_resolved_inside_the_service() -> None:
    provider = RecordingProvider()
    service = GenerationService(provider, AliasTable.parse(["gpt-4o-mini=local-model"]))

    async def main() -> None:
        stream = await service.submit(request("gpt-4o-mini"), ANONYMOUS)
        assert stream.prompt_tokens == 3
        assert await service.count_tokens(request("other"), STATIC_KEY) == 7

    asyncio.run(main())
    assert provider.models == ["local-model", "other"]
    assert service.served_model("gpt-4o-mini") == "local-model"

"""What the generation service asks of a provider (the local engine, later upstreams)."""

from __future__ import annotations

from typing import Protocol

from mlx_manager.types import EventStream, GenerateRequest


class GenerationProvider(Protocol):
    name: str  # the backend type, e.g. "local"

    async def submit(self, request: GenerateRequest) -> EventStream:
        """Validate and queue: an ApiError before anything streams."""
        ...

    async def count_tokens(self, request: GenerateRequest) -> int: ...

"""A request as the engine sees it: prompt token ids, sampling, limits."""

from __future__ import annotations

from dataclasses import dataclass

from mlx_manager.types import SamplingParams


@dataclass(frozen=True, slots=True)
class EngineRequest:
    request_id: str
    model_id: str
    prompt_ids: tuple[int, ...]
    sampling: SamplingParams
    max_tokens: int
    priority: int = 0  # lower runs first

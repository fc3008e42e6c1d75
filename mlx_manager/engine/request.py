"""A request as the engine sees it: prompt token ids, sampling, limits."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.types import SamplingParams


@dataclass(frozen=True, slots=True)
class EngineRequest:
    request_id: str
    model_id: str
    prompt_ids: tuple[int, ...]
    sampling: SamplingParams
    max_tokens: int
    priority: int = 0  # lower runs first
    # Vision requests: the processor's arrays (numpy: pixel values, masks, grid sizes),
    # turned into MLX arrays on the engine thread.
    media: Mapping[str, Any] | None = field(default=None, compare=False)
    # When it was handed to the engine (time.monotonic()): the start of its time in the queue.
    queued_at: float = field(default_factory=time.monotonic, compare=False)

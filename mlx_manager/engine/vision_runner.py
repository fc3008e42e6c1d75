"""One vision sequence through mlx-vlm's `generate_step`, on the engine thread."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from mlx_manager.engine.request import EngineRequest
from mlx_manager.models.grammar_tokenizer import grammar_tokenizer_for
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.runner.generation import StepRunner
from mlx_manager.runner.request_sampler import RequestSampler
from mlx_manager.runner.sampling import build_logits_processors


class VisionRunner(StepRunner):
    """One vision sequence through mlx-vlm's `generate_step` (engine thread only)."""

    def __init__(self, model: LoadedModel, request: EngineRequest, prefill_step_size: int) -> None:
        from mlx_vlm.generate import generate_step

        # The processor's arrays cross to the request side as numpy; MLX arrays again here.
        media: dict[str, Any] = {
            key: mx.array(value) if isinstance(value, np.ndarray) else value
            for key, value in (request.media or {}).items()
        }
        params = request.sampling
        grammar = grammar_tokenizer_for(model, params)
        # Its own sampler (own random key): seeded requests hold when interleaved.
        sampler = RequestSampler(params, len(model.tokenizer), grammar)
        steps = generate_step(
            mx.array([request.prompt_ids], dtype=mx.int32),
            model.model,
            media.pop("pixel_values", None),
            media.pop("attention_mask", None),
            max_tokens=request.max_tokens,
            sampler=sampler.sample,
            logits_processors=build_logits_processors(params, grammar),
            prefill_step_size=prefill_step_size,
            **media,
        )
        super().__init__(steps, params)

"""Runs one sequence through mlx-lm's `generate_step` (prefill, then one token per call).

The single-sequence runner of the first engine; the batched, paged runner replaces it behind
the same engine core interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from mlx_lm.generate import generate_step

from mlx_manager.runner.sampling import build_logits_processors, build_sampler
from mlx_manager.types import SamplingParams


@dataclass(frozen=True, slots=True)
class StepOutput:
    token: int
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()


class SequenceRunner:
    def __init__(
        self,
        model: Any,
        prompt_ids: list[int],
        params: SamplingParams,
        max_tokens: int,
        prefill_step_size: int,
    ) -> None:
        if params.seed is not None:
            mx.random.seed(params.seed)
        self._params = params
        self._steps: Iterator[tuple[Any, mx.array]] = generate_step(
            mx.array(prompt_ids, dtype=mx.uint32),
            model,
            max_tokens=max_tokens,
            sampler=build_sampler(params),
            logits_processors=build_logits_processors(params),
            prefill_step_size=prefill_step_size,
        )

    def next(self) -> StepOutput | None:
        """Generate one token (the first call also runs the prefill); None when exhausted."""
        try:
            token, logprobs = next(self._steps)
        except StopIteration:
            return None
        token = int(token)
        if not self._params.logprobs:
            return StepOutput(token)
        logprob: float = logprobs[token].item()  # type: ignore[assignment]
        return StepOutput(token, logprob, self._top(logprobs))

    def _top(self, logprobs: mx.array) -> tuple[tuple[int, float], ...]:
        k = self._params.top_logprobs
        if k <= 0:
            return ()
        ids = mx.argpartition(-logprobs, kth=k - 1)[:k]
        id_list: list[int] = ids.tolist()  # type: ignore[assignment]
        value_list: list[float] = logprobs[ids].tolist()  # type: ignore[assignment]
        pairs = sorted(zip(id_list, value_list, strict=True), key=lambda p: -p[1])
        return tuple((int(i), float(v)) for i, v in pairs)

    def close(self) -> None:
        close = getattr(self._steps, "close", None)
        if close is not None:
            close()

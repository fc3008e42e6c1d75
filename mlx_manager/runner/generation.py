"""Runs one sequence through a `generate_step` (prefill, then one token per call).

Used by the sequence-at-a-time engine: mlx-lm's `generate_step` for text models the paged
engine cannot run, mlx-vlm's for vision models (runner/vision.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from llguidance import LLTokenizer
from mlx_lm.generate import generate_step

from mlx_manager.runner.sampling import build_logits_processors, build_sampler
from mlx_manager.types import SamplingParams


@dataclass(frozen=True, slots=True)
class StepOutput:
    token: int
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()


class StepRunner:
    """One sequence's token steps from a `generate_step`-style iterator of (token, logprobs)."""

    def __init__(self, steps: Iterator[tuple[Any, mx.array]], params: SamplingParams) -> None:
        self._steps = steps
        self._params = params

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


class SequenceRunner(StepRunner):
    """A text sequence through mlx-lm's `generate_step`."""

    def __init__(
        self,
        model: Any,
        prompt_ids: list[int],
        params: SamplingParams,
        max_tokens: int,
        prefill_step_size: int,
        grammar_tokenizer: LLTokenizer | None = None,
    ) -> None:
        if params.seed is not None:
            mx.random.seed(params.seed)
        steps = generate_step(
            mx.array(prompt_ids, dtype=mx.uint32),
            model,
            max_tokens=max_tokens,
            sampler=build_sampler(params),
            logits_processors=build_logits_processors(params, grammar_tokenizer),
            prefill_step_size=prefill_step_size,
        )
        super().__init__(steps, params)

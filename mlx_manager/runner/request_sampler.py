"""Per-request token sampling inside a batch: each request keeps its own filters, logits
processors and random key, so a seeded request samples the same tokens whatever else shares
its batch. The filters and processors are mlx-lm's; only the key handling is ours.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import mlx.core as mx
from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p

from mlx_manager.runner.sampling import LogitsProcessor, build_logits_processors
from mlx_manager.types import SamplingParams

Filter = Callable[[mx.array], mx.array]


class RequestSampler:
    def __init__(self, params: SamplingParams, vocab_size: int) -> None:
        self.params = params
        self.greedy = params.temperature == 0.0
        self.processors: list[LogitsProcessor] = build_logits_processors(params)
        self._filters = _filters(params, vocab_size)
        seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(7), "little")
        self._key = mx.random.key(seed)

    @property
    def plain_greedy(self) -> bool:
        """Greedy with no processors: can share one argmax with others of its kind."""
        return self.greedy and not self.processors

    def process(self, history: list[int], logits: mx.array) -> mx.array:
        """Apply logits processors to one row `[1, vocab]`."""
        if not self.processors:
            return logits
        tokens = mx.array(history, dtype=mx.int32)
        for processor in self.processors:
            logits = processor(tokens, logits)
        return logits

    def sample(self, logprobs: mx.array) -> mx.array:
        """One token id from one row of log-probabilities `[1, vocab]` (lazy)."""
        if self.greedy:
            return mx.argmax(logprobs, axis=-1)
        for apply in self._filters:
            logprobs = apply(logprobs)
        self._key, step_key = mx.random.split(self._key)
        return mx.random.categorical(logprobs * (1.0 / self.params.temperature), key=step_key)


def _filters(params: SamplingParams, vocab_size: int) -> list[Filter]:
    filters: list[Filter] = []
    if 0.0 < params.top_p < 1.0:
        filters.append(lambda x: apply_top_p(x, params.top_p))
    if params.min_p > 0.0:
        filters.append(lambda x: apply_min_p(x, params.min_p))
    if 0 < params.top_k < vocab_size:
        filters.append(lambda x: apply_top_k(x, params.top_k))
    return filters

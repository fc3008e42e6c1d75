"""Per-request token sampling inside a batch: each request keeps its own filters, logits
processors and random key, so a seeded request samples the same tokens whatever else shares
its batch. The filters and processors are mlx-lm's; only the key handling is ours.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import mlx.core as mx
from llguidance import LLTokenizer
from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p

from mlx_manager.runner.sampling import LogitsProcessor, build_logits_processors
from mlx_manager.types import SamplingParams

Filter = Callable[[mx.array], mx.array]


class RequestSampler:
    def __init__(
        self, params: SamplingParams, vocab_size: int, grammar_tokenizer: LLTokenizer | None = None
    ) -> None:
        self.params = params
        self.greedy = params.temperature == 0.0
        # Penalties read the sampled history; the bias does not, so it never makes the
        # engine wait for a step's values.
        self.processors: list[LogitsProcessor] = build_logits_processors(
            dataclasses.replace(params, logit_bias=()), grammar_tokenizer
        )
        self._bias = _bias_arrays(params, vocab_size)
        self._filters = _filters(params, vocab_size)
        seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(7), "little")
        self._key = mx.random.key(seed)

    @property
    def plain_greedy(self) -> bool:
        """Greedy with no processors: can share one argmax with others of its kind."""
        return self.greedy and not self.processors and self._bias is None

    def process(self, history: list[int], logits: mx.array) -> mx.array:
        """Apply the logit bias and the logits processors to one row `[1, vocab]`."""
        if self._bias is not None:
            indices, values = self._bias
            logits = logits.at[:, indices].add(values)
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


def _bias_arrays(params: SamplingParams, vocab_size: int) -> tuple[mx.array, mx.array] | None:
    pairs = [(token, bias) for token, bias in params.logit_bias if 0 <= token < vocab_size]
    if not pairs:
        return None
    indices = mx.array([token for token, _ in pairs], dtype=mx.int32)
    return indices, mx.array([bias for _, bias in pairs], dtype=mx.float32)


def _filters(params: SamplingParams, vocab_size: int) -> list[Filter]:
    filters: list[Filter] = []
    if 0.0 < params.top_p < 1.0:
        filters.append(lambda x: apply_top_p(x, params.top_p))
    if params.min_p > 0.0:
        filters.append(lambda x: apply_min_p(x, params.min_p))
    if 0 < params.top_k < vocab_size:
        filters.append(lambda x: apply_top_k(x, params.top_k))
    return filters

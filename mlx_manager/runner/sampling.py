"""SamplingParams -> mlx-lm sampler and logits processors (mlx-lm does the maths)."""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
from llguidance import LLTokenizer
from mlx_lm.sample_utils import make_logits_processors, make_sampler

from mlx_manager.runner.grammar import GrammarProcessor
from mlx_manager.types import SamplingParams

Sampler = Callable[[mx.array], mx.array]
LogitsProcessor = Callable[[mx.array, mx.array], mx.array]

# OpenAI's penalties look at the whole completion; mlx-lm's default window is 20 tokens.
PENALTY_WINDOW = 4096


def build_sampler(params: SamplingParams) -> Sampler:
    return make_sampler(
        temp=params.temperature,
        top_p=params.top_p if params.top_p < 1.0 else 0.0,
        min_p=params.min_p,
        top_k=params.top_k,
    )


def build_logits_processors(
    params: SamplingParams, grammar_tokenizer: LLTokenizer | None = None
) -> list[LogitsProcessor]:
    """mlx-lm's bias and penalty processors, then the grammar (last, so nothing re-allows).

    `grammar_tokenizer`: the model's llguidance tokenizer, needed when `params` carry a
    constraint (`models.grammar_tokenizer`)."""
    processors = _mlx_lm_processors(params)
    if params.constraint is not None:
        if grammar_tokenizer is None:
            raise ValueError("a constrained request needs the model's grammar tokenizer")
        processors.append(GrammarProcessor(params.constraint, grammar_tokenizer))
    return processors


def _mlx_lm_processors(params: SamplingParams) -> list[LogitsProcessor]:
    return make_logits_processors(
        logit_bias=dict(params.logit_bias) or None,
        repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
        presence_penalty=params.presence_penalty or None,
        presence_context_size=PENALTY_WINDOW,
        frequency_penalty=params.frequency_penalty or None,
        frequency_context_size=PENALTY_WINDOW,
    )

"""A model's llguidance tokenizer: what grammars are compiled and checked against.

Both sides of the engine need it: the request side validates a grammar before a stream
starts, the engine thread builds each request's matcher from the grammar text. Built once per
tokenizer (about a second) and shared.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import llguidance.hf
from llguidance import LLTokenizer

from mlx_manager.errors import UnsupportedParameter
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.types import SamplingParams

_CACHE: weakref.WeakKeyDictionary[Any, LLTokenizer] = weakref.WeakKeyDictionary()


def grammar_tokenizer(tokenizer: Any, stop_token_ids: Iterable[int]) -> LLTokenizer:
    """The llguidance tokenizer of `tokenizer`; its EOS tokens are the model's stop ids, so a
    finished grammar lets generation end cleanly."""
    cached = _CACHE.get(tokenizer)
    if cached is None:
        hf = getattr(tokenizer, "_tokenizer", tokenizer)
        try:
            cached = llguidance.hf.from_tokenizer(hf, eos_token=sorted(stop_token_ids))
        except ValueError as exc:  # a slow (Python-only) tokenizer
            raise UnsupportedParameter(
                f"constrained decoding is not available for this model's tokenizer: {exc}",
                param="response_format",
            ) from exc
        _CACHE[tokenizer] = cached
    return cached


def grammar_tokenizer_for(model: LoadedModel, sampling: SamplingParams) -> LLTokenizer | None:
    """The tokenizer a request's grammar is matched with; None for unconstrained requests."""
    if sampling.constraint is None:
        return None
    return grammar_tokenizer(model.tokenizer, model.stop_token_ids)

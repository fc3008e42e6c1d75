"""Constrained decoding: an llguidance matcher as an mlx-lm logits processor.

llguidance (Rust, no torch, abi3 wheels for Linux x86_64 and macOS arm64) computes the set of
tokens the grammar allows next in well under a millisecond for JSON schemas; its own MLX helper
uses a Metal kernel, so the mask is applied here with plain ``mx.where`` (any MLX backend).
When the grammar is complete only the EOS tokens it was given (the model's stop tokens) stay
allowed, so generation ends cleanly.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from llguidance import LLMatcher, LLTokenizer

from mlx_manager.types import Constraint


class GrammarError(RuntimeError):
    """The sampled history left the grammar (a bug or a processor out of step)."""


class GrammarProcessor:
    """``(tokens, logits) -> logits``; ``tokens`` is the whole history, prompt included."""

    def __init__(self, constraint: Constraint, tokenizer: LLTokenizer) -> None:
        self._matcher = LLMatcher(tokenizer, constraint.grammar, log_level=0)
        if self._matcher.is_error():
            raise GrammarError(self._matcher.get_error())
        self._prompt_len: int | None = None
        self._consumed = 0

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        self._advance(tokens)
        allowed = self.allowed_mask(logits.shape[-1])
        return mx.where(mx.array(allowed), logits, mx.array(-mx.inf, dtype=logits.dtype))

    def _advance(self, tokens: mx.array) -> None:
        if self._prompt_len is None:  # the first call sees the prompt alone
            self._prompt_len = tokens.size
        start = self._prompt_len + self._consumed
        if tokens.size <= start:
            return
        new: list[int] = tokens[start:].tolist()  # type: ignore[assignment]
        for token in new:
            if not self._matcher.consume_token(token):
                raise GrammarError(self._matcher.get_error())
        self._consumed += len(new)

    def allowed_mask(self, vocab: int) -> np.ndarray:
        """A bool row `[vocab]`: True where the grammar allows the token next."""
        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little").astype(bool)
        if allowed.size >= vocab:
            return allowed[:vocab]
        return np.concatenate([allowed, np.zeros(vocab - allowed.size, dtype=bool)])

"""Logits of one position per row, without computing the vocabulary projection for the rest.

A prefill chunk of 512 tokens needs the logits of its last position only; for the common
mlx-lm families whose `Model.__call__` is just "body, then head" we run the body and apply the
head to the rows we need (vocab 49k-150k makes the full projection the largest matmul of a
prefill). Other families (logit soft-capping, scaling) go through their own `__call__`.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx

_PLAIN_HEAD_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
_LOOK_UP: Any = object()


def plain_head(model: Any) -> Any | None:
    """The vocabulary projection of a "body, then head" model; None for other families."""
    if getattr(model, "model_type", None) not in _PLAIN_HEAD_FAMILIES:
        return None
    body = getattr(model, "model", None)
    if body is None:
        return None
    if getattr(getattr(model, "args", None), "tie_word_embeddings", False):
        return body.embed_tokens.as_linear
    return getattr(model, "lm_head", None)


def last_position_logits(
    model: Any,
    inputs: mx.array,
    cache: list[Any],
    last_index: mx.array | None,
    head: Any = _LOOK_UP,
) -> mx.array:
    """[B, vocab] logits at `last_index[b]` of each row (the final position when None).

    `head` is `plain_head(model)`, looked up here unless the caller keeps it.
    """
    if head is _LOOK_UP:
        head = plain_head(model)
    out = model(inputs, cache=cache) if head is None else model.model(inputs, cache=cache)
    rows = out[:, -1, :] if last_index is None else out[mx.arange(out.shape[0]), last_index]
    return rows if head is None else head(rows)

"""Refusing a prompt that cannot fit the context before paying to tokenize all of it.

Two cheap checks, each a sound lower bound on the prompt's tokens:
- by length: no token covers more than `ModelCard.max_token_chars` characters
  (models/token_bounds.py), so a text that long per context token cannot fit;
- by a prefix: a text that is long for its context has its first `PREFIX_CHARS_PER_TOKEN`
  x context characters tokenized alone. Tokenizers split text into pieces (words, runs of
  spaces, added tokens) and encode each on its own, so the prefix's tokens are the full text's
  up to the piece it cuts; PREFIX_SLACK covers that piece. If the prefix alone holds a
  context's worth of tokens, the prompt cannot fit. The length bound is loose (the longest
  token is a run of ~80 spaces), so without this a prompt just under it (~5 M characters for a
  2,048-token context) was tokenized in full, seconds of CPU, only to be refused.
"""

from __future__ import annotations

from mlx_manager.errors import ContextLengthExceeded
from mlx_manager.models.card import ModelCard
from mlx_manager.models.token_bounds import min_tokens_for

# A text longer than this per context token is checked by its prefix (English averages ~4).
PREFIX_CHARS_PER_TOKEN = 8
PREFIX_SLACK = 64  # tokens the cut piece may count differently


def refuse_text_too_long(model: ModelCard, text_chars: int, param: str) -> None:
    """Refuse, before tokenizing it, a text that cannot fit whatever its tokens."""
    refuse_certainly_too_long(model, min_tokens_for(text_chars, model.max_token_chars), param)


def refuse_by_length_or_prefix(model: ModelCard, text: str, param: str) -> None:
    """Refuse by length, else by the tokens of a bounded prefix when the text is long."""
    refuse_text_too_long(model, len(text), param)
    prefix_chars = model.context_length * PREFIX_CHARS_PER_TOKEN
    if len(text) <= prefix_chars:
        return
    prefix_tokens = len(model.tokenizer.encode(text[:prefix_chars], add_special_tokens=False))
    refuse_certainly_too_long(model, prefix_tokens - PREFIX_SLACK, param)


def refuse_certainly_too_long(model: ModelCard, min_tokens: int, param: str) -> None:
    """ContextLengthExceeded when a prompt has at least `min_tokens` >= the context."""
    context_length = model.context_length
    if min_tokens < context_length:
        return
    raise ContextLengthExceeded(
        f"This model's maximum context length is {context_length} tokens. However, your "
        f"{'messages' if param == 'messages' else 'prompt'} resulted in at least {min_tokens} "
        "tokens. Please reduce the length of the prompt.",
        param=param,
        anthropic_message=f"prompt is too long: at least {min_tokens} tokens > "
        f"{context_length - 1} maximum",
    )

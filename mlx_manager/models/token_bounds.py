"""How much text one token can cover at most: a bound to refuse a giant prompt by its length
before paying for tokenizing it (15 MiB of text is ~4 M tokens and seconds of CPU).

A vocabulary entry never stands for more characters than it has: byte-level BPE entries hold
one character per byte (a text character is at least one byte), SentencePiece entries hold the
text itself (`▁` for a space) or a longer `<0x..>` byte escape, added tokens their content. So
`len(text) / longest entry` is a lower bound on the token count. Normalizers that compose
characters (NFC/NFKC) can shrink a text before it is split: MARGIN covers them.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

MARGIN = 2


def longest_token_chars(tokenizer: Any) -> int | None:
    """Most text characters one token covers, with MARGIN; None when the vocabulary is not
    readable (no bound: such prompts are tokenized whole, as before)."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None:
        return None
    try:
        vocab = get_vocab()
    except Exception as exc:  # a tokenizer without a plain vocabulary
        log.debug("no vocabulary to bound prompt sizes: %s", exc)
        return None
    if not vocab:
        return None
    return MARGIN * max(len(entry) for entry in vocab)


def min_tokens_for(text_chars: int, token_chars: int | None) -> int:
    """A lower bound on the tokens of a text of `text_chars` characters (0: no bound)."""
    if not token_chars:
        return 0
    return -(-text_chars // token_chars)

"""Tokenizing a chat prompt that extends a recent one: reuse that one's ids up to a special token.

Chat clients resend the whole conversation every turn, so most of a prompt's text was already
tokenized for an earlier request (~8 ms per 2,000 tokens on a laptop-class core; a 30,000-token
coding-agent prompt pays it on every turn). HF `tokenizers` first splits the text on its added
tokens (`<|im_start|>`, ...) and then normalizes, pre-tokenizes and encodes each piece on its
own. So when a new text shares its first characters with a cached one, its ids are the cached
ids up to an added token lying wholly inside the shared part, followed by the ids of the rest
of the text tokenized alone.

That holds by construction only when no added token strips the whitespace around it and no
normalizer or pre-tokenizer treats the start of a text specially, so the cache is built only
for byte-level BPE tokenizers (Llama 3, Qwen, SmolLM2, GPT-style) whose added tokens strip
nothing and match the raw text. As a guard against a tokenizer that breaks the rule anyway, the
encodes of each model are checked against a full encode until a few reuses have matched; one
mismatch turns the cache off for that model.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MIN_CHARS = 2048  # shorter texts are tokenized whole: the saving would not pay the lookup
MAX_ENTRIES = 8  # recent texts kept per model
CHECKED_ENCODES = 4  # reuses compared with a full encode before the cache is trusted


@dataclass(frozen=True, slots=True)
class _Entry:
    text: str
    ids: list[int]
    cut_chars: list[int]  # char start of each added token, ascending
    cut_tokens: list[int]  # ... and its token index


class PrefixTokenizer:
    """Encodes text like `full_encode`, reusing the ids of a recent text with the same start."""

    def __init__(
        self,
        backend: Any,  # tokenizers.Tokenizer
        added_ids: frozenset[int],
        longest_added: int,
        full_encode: Callable[[str], list[int]],
        max_cached_tokens: int | None = None,
    ) -> None:
        self._backend = backend
        self._added_ids = added_ids
        self._longest_added = longest_added
        self._full_encode = full_encode
        # A prompt longer than the context is refused: keeping it would only hold memory.
        self._max_cached_tokens = max_cached_tokens
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()  # prompts are prepared on several worker threads
        self._checks_left = CHECKED_ENCODES
        self.enabled = True
        self.reused_tokens = 0  # ids taken from the cache so far (for tests and logs)

    @classmethod
    def for_tokenizer(
        cls, tokenizer: Any, max_cached_tokens: int | None = None
    ) -> PrefixTokenizer | None:
        """The cache for an mlx-lm TokenizerWrapper, or None where the rule above may not hold.
        Reads the pipeline's parts, not the whole serialized tokenizer (~1 ms, not ~100)."""
        hf = getattr(tokenizer, "_tokenizer", None)
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            return None
        try:
            added = backend.get_added_tokens_decoder()
            spec = {
                "pre_tokenizer": _state(backend.pre_tokenizer),
                "normalizer": _state(backend.normalizer),
                "added_tokens": [
                    {
                        "lstrip": t.lstrip,
                        "rstrip": t.rstrip,
                        "single_word": t.single_word,
                        "normalized": t.normalized,
                    }
                    for t in added.values()
                ],
            }
        except (AttributeError, ValueError):
            return None
        if not added or not _splits_independently(spec):
            return None
        longest = max(len(t.content) for t in added.values())

        def full_encode(text: str) -> list[int]:
            return list(tokenizer.encode(text, add_special_tokens=False))

        return cls(backend, frozenset(added), longest, full_encode, max_cached_tokens)

    def encode(self, text: str) -> list[int]:
        backend = self._backend
        if not self.enabled or len(text) < MIN_CHARS or backend.truncation or backend.padding:
            return self._full_encode(text)  # (truncation or padding: set by another caller)
        with self._lock:
            entries = list(self._entries)
        cut_char, cut_token, base = self._best_cut(text, entries)
        encoding = backend.encode(text[cut_char:], add_special_tokens=False)
        ids = base.ids[:cut_token] + list(encoding.ids) if base is not None else list(encoding.ids)
        if not self._checked(text, ids, reused=base is not None):
            return self._full_encode(text)
        cuts = [
            (cut_char + start, cut_token + index)
            for index, (token, (start, _)) in enumerate(
                zip(encoding.ids, encoding.offsets, strict=True)
            )
            if token in self._added_ids
        ]
        if base is not None:
            kept = bisect.bisect_left(base.cut_chars, cut_char)
            cuts = list(zip(base.cut_chars[:kept], base.cut_tokens[:kept], strict=True)) + cuts
            self.reused_tokens += cut_token
        if self._max_cached_tokens is not None and len(ids) > self._max_cached_tokens:
            return ids
        entry = _Entry(text, ids, [c for c, _ in cuts], [t for _, t in cuts])
        with self._lock:
            self._entries = [e for e in self._entries if e.text != text][-(MAX_ENTRIES - 1) :]
            self._entries.append(entry)
        return ids

    def _best_cut(self, text: str, entries: list[_Entry]) -> tuple[int, int, _Entry | None]:
        """(char, token index, entry) of the latest reusable cut among `entries`: an added
        token that starts at least `longest_added` chars before the end of the shared start
        (so every added-token match up to it is the same in both texts)."""
        best: tuple[int, int, _Entry | None] = (0, 0, None)
        for entry in entries:
            limit = _common_prefix_len(text, entry.text) - self._longest_added
            i = bisect.bisect_right(entry.cut_chars, limit) - 1
            if i >= 0 and entry.cut_chars[i] > best[0]:
                best = (entry.cut_chars[i], entry.cut_tokens[i], entry)
        return best

    def _checked(self, text: str, ids: list[int], reused: bool) -> bool:
        """Until CHECKED_ENCODES reuses have matched, compare every result with a full encode."""
        with self._lock:
            if self._checks_left <= 0:
                return True
            self._checks_left -= int(reused)
        if self._full_encode(text) == ids:
            return True
        self.enabled = False
        log.warning("prefix tokenization disagreed with a full encode; turned off")
        return False


def _common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common start of `a` and `b` (binary search on slice equality,
    which compares in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _state(component: Any) -> Any:
    """A tokenizer component's own JSON (what pickling it writes), None when absent."""
    return None if component is None else json.loads(component.__getstate__())


def _splits_independently(spec: dict[str, Any]) -> bool:
    """Byte-level BPE whose added tokens strip nothing and match the raw text."""
    pre = json.dumps(spec.get("pre_tokenizer"))
    normalizer = json.dumps(spec.get("normalizer"))
    if '"ByteLevel"' not in pre or '"Metaspace"' in pre:
        return False
    if '"Prepend"' in normalizer or '"Metaspace"' in normalizer:
        return False
    return all(
        not (t.get("lstrip") or t.get("rstrip") or t.get("single_word") or t.get("normalized"))
        for t in spec.get("added_tokens") or []
    )

"""What serving an embeddings model needs to know: its limits, size and special tokens."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    dimensions: int
    max_tokens: int  # per input, special tokens included
    matryoshka: bool  # the model may be truncated to fewer dimensions (then renormalized)
    prefix_ids: tuple[int, ...]  # special tokens before the text (e.g. [CLS])
    suffix_ids: tuple[int, ...]  # and after it (e.g. [SEP])
    pad_id: int

    @property
    def max_content_tokens(self) -> int:
        return self.max_tokens - len(self.prefix_ids) - len(self.suffix_ids)

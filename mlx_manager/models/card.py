"""What the asyncio side knows of a loaded model: everything but its weights.

The engine thread owns the weights (`LoadedModel`); the request side renders, tokenizes,
builds grammars and parses replies from a card. A card holds no MLX array, so it could cross a
process boundary as it is when the engine core moves into its own process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_manager.models.detection import ModelType
from mlx_manager.models.embedding_spec import EmbeddingSpec
from mlx_manager.models.families import ChatFamily
from mlx_manager.models.prefix_tokenizer import PrefixTokenizer


@dataclass(frozen=True, slots=True)
class ModelCard:
    model_id: str
    path: Path
    tokenizer: Any  # mlx_lm TokenizerWrapper (or the HF tokenizer of embeddings models)
    family: ChatFamily
    context_length: int
    stop_token_ids: frozenset[int]
    model_type: ModelType = ModelType.TEXT
    embedding: EmbeddingSpec | None = None  # embeddings models: dimensions, limits
    # Chat prompts: reuses a recent prompt's ids for the shared start (None: not safe here).
    prompt_encoder: PrefixTokenizer | None = None
    # Most text characters one token can cover (models/token_bounds.py); None: unknown.
    max_token_chars: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))

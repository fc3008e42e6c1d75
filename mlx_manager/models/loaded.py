"""A text model in memory, with what serving it needs: tokenizer, chat family, limits."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx_lm
from mlx_lm.utils import sharded_load

from mlx_manager.models.card import ModelCard
from mlx_manager.models.cpu_precision import densify_for_cpu
from mlx_manager.models.default_model import DEFAULT_MODEL_NAME, ensure_embedded_model
from mlx_manager.models.detection import ModelType
from mlx_manager.models.embedding_spec import EmbeddingSpec
from mlx_manager.models.families import ChatFamily, detect_family
from mlx_manager.models.prefix_tokenizer import PrefixTokenizer
from mlx_manager.models.sources import ModelSpec, resolve_model_dir
from mlx_manager.models.token_bounds import longest_token_chars

FALLBACK_CONTEXT_LENGTH = 4096
_CONTEXT_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "n_ctx",
    "n_text_ctx",  # Whisper: the decoder's token window
)


@dataclass(slots=True)
class LoadedModel:
    model_id: str
    path: Path
    model: Any
    tokenizer: Any  # mlx_lm TokenizerWrapper
    family: ChatFamily
    context_length: int
    stop_token_ids: frozenset[int]
    created: int = field(default_factory=lambda: int(time.time()))
    model_type: ModelType = ModelType.TEXT
    embedding: EmbeddingSpec | None = None  # embeddings models: dimensions, limits
    processor: Any = None  # vision models: the transformers processor (image tokens, pixels)
    # Chat prompts: reuses a recent prompt's ids for the shared start (None: not safe here).
    prompt_encoder: PrefixTokenizer | None = None
    # Most text characters one token can cover (models/token_bounds.py); None: unknown.
    max_token_chars: int | None = None

    def card(self) -> ModelCard:
        """What the request side needs of this model: everything but the weights."""
        return ModelCard(
            model_id=self.model_id,
            path=self.path,
            tokenizer=self.tokenizer,
            family=self.family,
            context_length=self.context_length,
            stop_token_ids=self.stop_token_ids,
            model_type=self.model_type,
            embedding=self.embedding,
            prompt_encoder=self.prompt_encoder,
            max_token_chars=self.max_token_chars,
            created=self.created,
        )


def default_spec() -> ModelSpec:
    return ModelSpec(DEFAULT_MODEL_NAME, "embedded")


def resolve_spec_dir(spec: ModelSpec, cache_dir: Path | None, hub_timeout_s: float) -> Path:
    if spec.is_embedded:
        return ensure_embedded_model(cache_dir)
    return resolve_model_dir(spec.source, hub_timeout_s)


def context_length_of(config: dict[str, Any]) -> int:
    for section in (config, config.get("text_config") or {}):
        for key in _CONTEXT_KEYS:
            value = section.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return FALLBACK_CONTEXT_LENGTH


def load_text_model(
    spec: ModelSpec,
    path: Path,
    context_override: int | None,
    cpu_float32_max_gb: float,
    group: Any = None,
) -> LoadedModel:
    """Load weights and tokenizer with mlx-lm. Must run on the thread that owns MLX.

    `group` (an mx.distributed group): load this rank's shard with mlx-lm's `sharded_load`
    (tensor parallel, `Model.shard`); every rank of the group must call it at once."""
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if group is not None:
        loaded = sharded_load(str(path), tensor_group=group)
    else:
        loaded = mlx_lm.load(str(path))
    model, tokenizer = loaded[0], loaded[1]
    densify_for_cpu(model, cpu_float32_max_gb)
    family = detect_family(config, spec.model_id)
    context_length = context_override or context_length_of(config)
    return LoadedModel(
        model_id=spec.model_id,
        path=path,
        model=model,
        tokenizer=tokenizer,
        family=family,
        context_length=context_length,
        stop_token_ids=family.stop_token_ids(tokenizer),
        prompt_encoder=PrefixTokenizer.for_tokenizer(tokenizer, max_cached_tokens=context_length),
        max_token_chars=longest_token_chars(tokenizer),
    )

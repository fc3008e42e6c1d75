"""Loading an embeddings model with mlx-embeddings, and what serving it needs to know.

The model stays mlx-embeddings' own (`text_embeds`: mean-pooled over the attention mask and
L2-normalized, as sentence-transformers does); this module only reads the limits around it:
the longest input (sentence-transformers' ``max_seq_length`` when given, else the model's
position table), the output dimension (probed with one tiny forward), whether the model was
trained for Matryoshka truncation (``matryoshka_dimensions`` in config.json or
config_sentence_transformers.json), and the special tokens the tokenizer wraps each text in,
so token-id inputs get the same wrapping as text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlx_manager.models.detection import ModelType
from mlx_manager.models.embedding_spec import EmbeddingSpec
from mlx_manager.models.families import detect_family
from mlx_manager.models.loaded import LoadedModel, context_length_of


def load_embedding_model(model_id: str, path: Path) -> LoadedModel:
    """Load with mlx-embeddings. Must run on the thread that owns MLX."""
    import mlx_embeddings  # imports mlx-vlm: only when an embeddings model is served

    config = _read_json(path / "config.json")
    model, wrapper = mlx_embeddings.load(str(path))
    tokenizer = getattr(wrapper, "_tokenizer", wrapper)
    prefix, suffix = special_wrapping(tokenizer)
    spec = EmbeddingSpec(
        dimensions=_probe_dimensions(model, (*prefix, *suffix)),
        max_tokens=max_input_tokens(path, config),
        matryoshka=declares_matryoshka(path, config),
        prefix_ids=prefix,
        suffix_ids=suffix,
        pad_id=int(tokenizer.pad_token_id or 0),
    )
    return LoadedModel(
        model_id=model_id,
        path=path,
        model=model,
        tokenizer=tokenizer,
        family=detect_family(config, model_id),
        context_length=spec.max_tokens,
        stop_token_ids=frozenset(),
        model_type=ModelType.EMBEDDINGS,
        embedding=spec,
    )


def special_wrapping(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The special tokens the tokenizer puts before and after a text."""
    probe = "hello world"
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return tuple(full[:start]), tuple(full[start + len(plain) :])
    return (), ()


def max_input_tokens(path: Path, config: dict[str, Any]) -> int:
    positions = context_length_of(config)
    st_limit = _read_json(path / "sentence_bert_config.json").get("max_seq_length")
    if isinstance(st_limit, int) and 0 < st_limit < positions:
        return st_limit
    return positions


def declares_matryoshka(path: Path, config: dict[str, Any]) -> bool:
    st_config = _read_json(path / "config_sentence_transformers.json")
    return any(bool(c.get("matryoshka_dimensions")) for c in (config, st_config))


def _probe_dimensions(model: Any, ids: tuple[int, ...]) -> int:
    import mlx.core as mx

    tokens = mx.array([list(ids) or [0]], dtype=mx.int32)
    out = model(tokens, attention_mask=mx.ones(tokens.shape, dtype=mx.int32))
    return int(out.text_embeds.shape[-1])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids and their attention mask, both int32 (batch, longest)."""
    longest = max(len(s) for s in sequences)
    ids = np.full((len(sequences), longest), pad_id, dtype=np.int32)
    mask = np.zeros((len(sequences), longest), dtype=np.int32)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def forward(model: LoadedModel, sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """One padded forward on the engine thread: (len(sequences), dimensions) unit vectors."""
    import mlx.core as mx

    ids, mask = pad(sequences, _spec(model).pad_id)
    out = model.model(mx.array(ids), attention_mask=mx.array(mask))
    embeds = out.text_embeds.astype(mx.float32)
    mx.eval(embeds)
    return np.array(embeds, copy=True)


def _spec(model: LoadedModel) -> EmbeddingSpec:
    if model.embedding is None:
        raise ValueError(f"{model.model_id} is not an embeddings model")
    return model.embedding

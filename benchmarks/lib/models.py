"""The model a benchmark runs: the embedded default or a model directory, and its shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SHAPE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "tie_word_embeddings",
    "torch_dtype",
    "quantization",
)


def resolve_model(name: str | Path | None) -> Path:
    """`embedded` (or None): the server's default model, converted on first use; else a
    directory with a config.json."""
    if name is None or str(name) == "embedded":
        from mlx_manager.models.default_model import ensure_embedded_model

        return ensure_embedded_model()
    path = Path(name).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise SystemExit(f"{path} is not a model directory (no config.json)")
    return path


def read_config(path: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((path / "config.json").read_text(encoding="utf-8"))
    return config


def model_info(path: Path) -> dict[str, Any]:
    """The model's path, weight bytes and shape (config.json's main keys)."""
    config = read_config(path)
    weights = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    return {
        "path": str(path),
        "name": path.name,
        "weights_bytes": weights,
        **{k: config[k] for k in SHAPE_KEYS if k in config},
    }

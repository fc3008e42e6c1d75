"""The loader for each model type: mlx-lm for text, mlx-vlm for vision, mlx-embeddings for
embeddings, mlx-audio for speech.
"""

from __future__ import annotations

from pathlib import Path

from mlx_manager.models.detection import ModelType
from mlx_manager.models.embedding_model import load_embedding_model
from mlx_manager.models.loaded import LoadedModel, load_text_model
from mlx_manager.models.sources import ModelSpec
from mlx_manager.models.speech_model import load_speech_model
from mlx_manager.models.vision_model import load_vision_model


def load_model(
    model_id: str,
    path: Path,
    model_type: ModelType,
    context_override: int | None,
    cpu_float32_max_gb: float,
) -> LoadedModel:
    """Load with the type's loader. Must run on the thread that owns MLX."""
    if model_type is ModelType.EMBEDDINGS:
        return load_embedding_model(model_id, path)
    if model_type is ModelType.SPEECH:
        return load_speech_model(model_id, path, cpu_float32_max_gb)
    if model_type is ModelType.VISION:
        return load_vision_model(model_id, path, context_override)
    spec = ModelSpec(model_id, str(path))
    return load_text_model(spec, path, context_override, cpu_float32_max_gb)

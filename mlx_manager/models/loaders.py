"""The loader for each model type: mlx-lm for text, mlx-embeddings for embeddings.

`check_loadable` answers before any file is read, so a request for a model whose loader does
not exist yet fails at once with a 501 naming the type, instead of queueing a doomed load.
"""

from __future__ import annotations

from pathlib import Path

from mlx_manager.errors import ModelNotSupported
from mlx_manager.models.detection import ModelType
from mlx_manager.models.embedding_model import load_embedding_model
from mlx_manager.models.loaded import LoadedModel, load_text_model
from mlx_manager.models.sources import ModelSpec
from mlx_manager.models.speech_model import load_speech_model

_NOT_YET = {
    ModelType.VISION: "vision models (mlx-vlm) are not supported yet",
}


def check_loadable(model_id: str, model_type: ModelType) -> None:
    """Raise ModelNotSupported when no loader serves `model_type` yet."""
    reason = _NOT_YET.get(model_type)
    if reason is not None:
        raise ModelNotSupported(f"The model '{model_id}' is a {model_type} model: {reason}.")


def load_model(
    model_id: str,
    path: Path,
    model_type: ModelType,
    context_override: int | None,
    cpu_float32_max_gb: float,
) -> LoadedModel:
    """Load with the type's loader. Must run on the thread that owns MLX."""
    check_loadable(model_id, model_type)
    if model_type is ModelType.EMBEDDINGS:
        return load_embedding_model(model_id, path)
    if model_type is ModelType.SPEECH:
        return load_speech_model(model_id, path, cpu_float32_max_gb)
    spec = ModelSpec(model_id, str(path))
    return load_text_model(spec, path, context_override, cpu_float32_max_gb)

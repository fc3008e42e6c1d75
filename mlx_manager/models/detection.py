"""What kind of model a directory holds: text generation, vision-language, embeddings, speech.

The type decides the loader (mlx-lm, mlx-vlm, mlx-embeddings) and which endpoints accept the
model. config.json decides first, in this order:

0. a Whisper ``model_type`` / architecture -> speech (speech-to-text, mlx-audio);
1. a ``vision_config`` section (or a known vision architecture) -> vision;
2. a sentence-transformers pooling config (``1_Pooling/config.json``, ``modules.json``) or a
   ``pooling_config`` key -> embeddings (Qwen3-Embedding declares a *ForCausalLM* class, so
   pooling outranks the architecture name);
3. an encoder architecture (``BertModel``, ``XLMRobertaModel`` ...) or encoder model_type ->
   embeddings;
4. a ``*ForCausalLM`` / ``*LMHeadModel`` architecture -> text.

Without a decisive config the model's name is matched against well-known patterns; anything
else is text generation.
"""

from __future__ import annotations

import enum
import json
import re
from pathlib import Path
from typing import Any


class ModelType(enum.StrEnum):
    TEXT = "text"
    VISION = "vision"
    EMBEDDINGS = "embeddings"
    SPEECH = "speech"  # speech-to-text (Whisper, through mlx-audio)

    @property
    def generates_text(self) -> bool:
        """Chat and text completions accept this type."""
        return self not in (ModelType.EMBEDDINGS, ModelType.SPEECH)


_POOLING_FILES = ("1_Pooling/config.json", "modules.json")
_ENCODER_TYPES = {
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "nomic_bert",
    "modernbert",
    "mpnet",
    "e5",
}
_ENCODER_ARCH = re.compile(r"^(\w*Bert|\w*Roberta|MPNet|E5)(Model|ForMaskedLM)$", re.IGNORECASE)
_VISION_ARCH = re.compile(
    r"(Llava|Idefics|PaliGemma|Pixtral|Qwen\d?(_\d)?VL|Mllama|Florence|Molmo|SmolVLM|VisionEncoder)",
    re.IGNORECASE,
)
_SPEECH_TYPES = {"whisper"}
_SPEECH_ARCH = re.compile(r"^Whisper", re.IGNORECASE)
_SPEECH_NAMES = re.compile(r"whisper", re.IGNORECASE)
_TEXT_ARCH = re.compile(r"(ForCausalLM|LMHeadModel)$")
_EMBEDDING_NAMES = re.compile(
    r"(embed|minilm|sentence-t|\bbge-|\be5-|\bgte-|mpnet|retriev|rerank)", re.IGNORECASE
)
_VISION_NAMES = re.compile(
    r"(-vl\b|-vl-|vlm|vision|llava|pixtral|idefics|paligemma|florence|molmo|qwen\d?(\.\d)?-vl)",
    re.IGNORECASE,
)


def read_config(path: Path) -> dict[str, Any] | None:
    """config.json of a model directory, or None when it is missing or not a JSON object."""
    try:
        data = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def detect_model_dir(path: Path, name: str = "") -> ModelType:
    """The type of the model in `path`, falling back to `name` (default: the directory name)."""
    has_pooling = any((path / f).is_file() for f in _POOLING_FILES)
    return detect_model_type(read_config(path), name or path.name, has_pooling=has_pooling)


def detect_model_type(
    config: dict[str, Any] | None, name: str, *, has_pooling: bool = False
) -> ModelType:
    from_config = _from_config(config, has_pooling) if config is not None else None
    if from_config is not None:
        return from_config
    if _SPEECH_NAMES.search(name):
        return ModelType.SPEECH
    if has_pooling or _EMBEDDING_NAMES.search(name):
        return ModelType.EMBEDDINGS
    if _VISION_NAMES.search(name):
        return ModelType.VISION
    return ModelType.TEXT


def _from_config(config: dict[str, Any], has_pooling: bool) -> ModelType | None:
    architectures = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    model_type = str(config.get("model_type") or "").lower()
    if model_type in _SPEECH_TYPES or any(_SPEECH_ARCH.search(a) for a in architectures):
        return ModelType.SPEECH
    if isinstance(config.get("vision_config"), dict) or any(
        _VISION_ARCH.search(a) for a in architectures
    ):
        return ModelType.VISION
    if has_pooling or "pooling_config" in config:
        return ModelType.EMBEDDINGS
    if model_type in _ENCODER_TYPES or any(_ENCODER_ARCH.match(a) for a in architectures):
        return ModelType.EMBEDDINGS
    if any(_TEXT_ARCH.search(a) for a in architectures):
        return ModelType.TEXT
    return None

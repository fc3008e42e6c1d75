"""Vision-language models through mlx-vlm: load, turn a request into model inputs, generate.

mlx-vlm does the model work (vision tower, merging image features into the text embeddings,
the language model); the model's own transformers processor renders image tokens and
preprocesses pixels. What is ours: the split between threads and the streaming.

- `build_inputs` (tokenization with image tokens expanded, pixel preprocessing) and
  `VisionRunner` run on the engine thread, the one thread that touches MLX.
- mlx-vlm's `generate_step` yields one token per call, so the engine streams every token as
  it is sampled and steps the other models' engines between tokens.

Vision sequences are not batched with each other: mlx-vlm's batch generator samples every
row with one shared sampler, which would drop per-request sampling (temperature, top-p, seed,
penalties, grammars). They run interleaved token by token instead (engine/serial_engine.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx_lm.tokenizer_utils import TokenizerWrapper
from PIL.Image import Image

from mlx_manager.models.detection import ModelType
from mlx_manager.models.families import detect_family
from mlx_manager.models.loaded import LoadedModel, context_length_of
from mlx_manager.models.token_bounds import longest_token_chars


@dataclass(frozen=True, slots=True)
class VisionInputs:
    prompt_ids: list[int]
    media: dict[str, Any]  # pixel values, attention masks, model-specific extras (MLX arrays)


def load_vision_model(model_id: str, path: Path, context_override: int | None) -> LoadedModel:
    """Load weights and processor with mlx-vlm. Must run on the thread that owns MLX."""
    import mlx_vlm  # heavy import, only for servers that load a vision model
    from mlx_vlm.tokenizer_utils import load_tokenizer

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    model, processor = mlx_vlm.load(str(path))
    hf_tokenizer = processor.tokenizer
    if getattr(hf_tokenizer, "chat_template", None) is None:
        hf_tokenizer.chat_template = getattr(processor, "chat_template", None)
    # mlx-vlm picks the streaming detokenizer that matches tokenizer.json's decoder.
    detokenizer_class = load_tokenizer(path, return_tokenizer=False)
    tokenizer = TokenizerWrapper(hf_tokenizer, detokenizer_class, eos_token_ids=_eos_ids(config))
    text_config = config.get("text_config") or {}
    family = detect_family(config, model_id)
    if family.name == "chatml" and isinstance(text_config, dict):
        family = detect_family(text_config, model_id)
    return LoadedModel(
        model_id=model_id,
        path=path,
        model=model,
        tokenizer=tokenizer,
        family=family,
        context_length=context_override or context_length_of(config),
        stop_token_ids=family.stop_token_ids(tokenizer),
        model_type=ModelType.VISION,
        processor=processor,
        max_token_chars=longest_token_chars(tokenizer),
    )


def _eos_ids(config: dict[str, Any]) -> list[int]:
    for section in (config, config.get("text_config") or {}):
        eos = section.get("eos_token_id")
        if isinstance(eos, int):
            return [eos]
        if isinstance(eos, list):
            return [int(e) for e in eos]
    return []


def build_inputs(model: LoadedModel, prompt_text: str, images: Sequence[Image]) -> VisionInputs:
    """Tokenize the rendered prompt (image tokens expanded) and preprocess the images.

    Engine thread only: mlx-vlm's processors return MLX arrays whatever `return_tensors` says.
    """
    from mlx_vlm.utils import prepare_inputs

    arrays = prepare_inputs(
        model.processor,
        images=list(images) or None,
        prompts=[prompt_text],
        add_special_tokens=False,  # the chat template wrote any BOS itself
    )
    media = {k: v for k, v in arrays.items() if v is not None and k != "input_ids"}
    input_ids: list[int] = arrays["input_ids"].reshape(-1).tolist()
    return VisionInputs(input_ids, media)

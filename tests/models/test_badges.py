"""Badges from model directories: real fixtures (SmolLM2, the tiny families, SmolVLM,
MiniLM, Whisper), quantized copies made with mlx-lm, and hand-made config and template
variants; the cache recomputes only when the directory's files change."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx_lm
import pytest
from mlx.utils import tree_flatten
from mlx_lm.utils import quantize_model

from mlx_manager.models.badges import BadgeCache, Badges, Quantization, model_badges
from mlx_manager.models.detection import ModelType
from mlx_manager.models.template_features import read_chat_template, template_features

TOOLS_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\\n' }}{% for tool in tools %}{{ tool | tojson }}"
    "{% endfor %}{{ '<|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}{{ message['content'] }}{% endfor %}"
)


def float_count(path: Path) -> int:
    """Parameters as MLX loads them (unquantized models only)."""
    weights: Any = mx.load(str(path / "model.safetensors"))
    return sum(v.size for v in weights.values())


def copy_model(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("_base_tokenizer"))
    return dest


def edit_config(path: Path, **changes: Any) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def quantized_copy(src: Path, dest: Path, mode: str, embed_bits: int | None = None) -> Path:
    """`src` quantized by mlx-lm (the embedding at `embed_bits` when given: mixed precision)."""
    copy_model(src, dest)
    model, _ = mlx_lm.load(str(src))
    config = json.loads((src / "config.json").read_text())

    def predicate(path: str, module: Any) -> bool | dict[str, Any]:
        if embed_bits is not None and "embed_tokens" in path:
            return {"group_size": 32, "bits": embed_bits, "mode": mode}
        return True

    model, config = quantize_model(model, config, 32, 4, mode=mode, quant_predicate=predicate)
    mx.save_safetensors(str(dest / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def test_embedded_smollm2(smollm2_dir: Path) -> None:
    badges = model_badges(smollm2_dir)
    config = json.loads((smollm2_dir / "config.json").read_text())
    hidden, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    per_layer = 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * config["intermediate_size"]
    expected = vocab * hidden + layers * (per_layer + 2 * hidden) + hidden  # tied embedding
    assert badges.parameters == expected == 134_515_008
    assert badges.model_type is ModelType.TEXT and badges.has_chat_template
    # Its ChatML template renders no tools: the server prompts them (Hermes).
    assert (badges.supports_tools, badges.tool_calls) == (False, "prompted")
    assert not badges.supports_thinking and not badges.thinking_toggle
    assert badges.quantization == Quantization(4, 32, "affine", (4, 8))  # 8-bit embedding
    assert badges.precision == "4/8-bit"
    weights = sum(f.stat().st_size for f in smollm2_dir.glob("*.safetensors"))
    assert 0 < badges.weight_bytes < weights


@pytest.mark.parametrize("family", ["llama", "smollm2", "mistral", "gemma", "phi3"])
def test_tiny_families_are_float32_text(tiny_model_dirs: dict[str, Path], family: str) -> None:
    path = tiny_model_dirs[family]
    badges = model_badges(path)
    assert badges.parameters == float_count(path)
    assert badges.quantization is None and badges.dtype == "float32"
    assert badges.precision == "float32" and badges.model_type is ModelType.TEXT
    assert badges.weight_bytes == 4 * badges.parameters
    assert badges.tool_calls == "prompted" and not badges.supports_thinking


def test_qwen_template_switches_thinking(tiny_model_dirs: dict[str, Path]) -> None:
    badges = model_badges(tiny_model_dirs["qwen"])  # Qwen3's enable_thinking switch
    assert badges.supports_thinking and badges.thinking_toggle
    assert not badges.supports_tools


def test_quantized_counts_unpacked_parameters(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    src = tiny_model_dirs["llama"]
    dense = float_count(src)
    affine = model_badges(quantized_copy(src, tmp_path / "q4", "affine"))
    assert affine.parameters == dense
    assert affine.quantization == Quantization(4, 32, "affine")
    assert affine.precision == "4-bit" and affine.weight_bytes < 4 * dense // 4
    mixed = model_badges(quantized_copy(src, tmp_path / "q48", "affine", embed_bits=8))
    assert mixed.parameters == dense and mixed.quantization is not None
    assert mixed.quantization.mixed_bits == (4, 8) and mixed.precision == "4/8-bit"
    mxfp4 = model_badges(quantized_copy(src, tmp_path / "mxfp4", "mxfp4"))  # no biases
    assert mxfp4.parameters == dense and mxfp4.quantization == Quantization(4, 32, "mxfp4")


def test_other_types(
    tiny_smolvlm_dir: Path, minilm_dir: Path, whisper_dir: Path, pool_model_root: Path
) -> None:
    vision = model_badges(tiny_smolvlm_dir)
    assert vision.model_type is ModelType.VISION and vision.has_chat_template
    assert vision.tool_calls == "prompted" and vision.parameters
    minilm = model_badges(minilm_dir)
    assert minilm.model_type is ModelType.EMBEDDINGS and minilm.parameters == 22_713_728
    assert (minilm.tool_calls, minilm.supports_thinking) == (None, False)
    speech = model_badges(whisper_dir)
    assert speech.model_type is ModelType.SPEECH and speech.tool_calls is None
    assert speech.parameters and speech.dtype == "float32"
    broken = model_badges(pool_model_root / "broken")  # a header that is not JSON
    assert broken.parameters is None and broken.weight_bytes > 0


def test_template_variants(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    path = copy_model(tiny_model_dirs["smollm2"], tmp_path / "m")
    config_file = path / "tokenizer_config.json"
    tokenizer_config = json.loads(config_file.read_text())

    tokenizer_config["chat_template"] = [
        {"name": "default", "template": "{{ messages }}"},
        {"name": "tool_use", "template": TOOLS_TEMPLATE},
    ]
    config_file.write_text(json.dumps(tokenizer_config))
    badges = model_badges(path)
    assert (badges.supports_tools, badges.tool_calls) == (True, "native")

    del tokenizer_config["chat_template"]
    config_file.write_text(json.dumps(tokenizer_config))
    assert not template_features(path).has_template
    (path / "chat_template.jinja").write_text("{{ '<think>' if enable_thinking }}")
    features = template_features(path)
    assert features.has_template and features.thinking and features.thinking_toggle
    (path / "chat_template.jinja").unlink()
    (path / "chat_template.json").write_text(json.dumps({"chat_template": TOOLS_TEMPLATE}))
    assert read_chat_template(path) == TOOLS_TEMPLATE and template_features(path).native_tools


def test_thinking_tokens_in_the_vocabulary(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """A reasoning model whose template says nothing of thinking (DeepSeek-R1 style): the
    server splits <think> blocks because the vocabulary has the pair."""
    path = copy_model(tiny_model_dirs["smollm2"], tmp_path / "r1")
    tokenizer = json.loads((path / "tokenizer.json").read_text())
    next_id = max(t["id"] for t in tokenizer["added_tokens"]) + 1000
    for offset, token in enumerate(("<think>", "</think>")):
        tokenizer["added_tokens"].append(
            {
                "id": next_id + offset,
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": False,
            }
        )
    (path / "tokenizer.json").write_text(json.dumps(tokenizer))
    badges = model_badges(path)
    assert badges.supports_thinking and not badges.thinking_toggle


def test_config_variants(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    path = copy_model(tiny_model_dirs["llama"], tmp_path / "m")
    edit_config(path, quantization_config={"quant_method": "gptq", "bits": 4, "group_size": 128})
    assert model_badges(path).quantization == Quantization(4, 128, "gptq")
    edit_config(path, quantization_config=None, torch_dtype="bfloat16")
    assert model_badges(path).dtype == "float32"  # the headers say what is stored
    edit_config(path, vision_config={"hidden_size": 32})
    assert model_badges(path).model_type is ModelType.VISION


def test_only_the_header_is_read(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """A shard cut right after its header still gives the count: no tensor is read."""
    path = copy_model(tiny_model_dirs["llama"], tmp_path / "m")
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    weights.write_bytes(data[: 8 + length])
    assert model_badges(path).parameters == float_count(tiny_model_dirs["llama"])


def test_cache_recomputes_on_change(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    path = copy_model(tiny_model_dirs["qwen"], tmp_path / "m")
    computed: list[Path] = []

    def compute(where: Path, name: str) -> Badges:
        computed.append(where)
        return model_badges(where, name)

    cache = BadgeCache(compute)
    first = cache.get(path, "m")
    assert cache.get(path, "m") is first and len(computed) == 1
    (path / "tokenizer_config.json").write_text(
        (path / "tokenizer_config.json").read_text().replace("enable_thinking", "disabled_x")
    )
    changed = cache.get(path, "m")
    assert len(computed) == 2 and first.thinking_toggle and not changed.thinking_toggle
    (path / "chat_template.jinja").write_text(TOOLS_TEMPLATE)  # a new file
    assert cache.get(path, "m").supports_tools and len(computed) == 3

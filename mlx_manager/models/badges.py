"""A model's badges, from its directory alone: type, tools, thinking, precision, parameters.

Pure functions over the files (config.json, the chat template, the safetensors headers); no
weight is read and no tokenizer is built, so a directory of dozens of models is described in
milliseconds, and `BadgeCache` does it once per change of the directory's files.

- type: models/detection (the same answer that picks the loader).
- tools / thinking: models/template_features.
- quantization: config.json's `quantization` (MLX: bits, group size, mode; per-module entries
  make it mixed), else a `quantization_config` (another library's method), else none; the
  dtype is the one holding most unpacked parameters (config.json's `torch_dtype` if no
  header says).
- parameters: models/weights_meta (packed weights counted unpacked).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlx_manager.models.detection import ModelType, detect_model_dir, read_config
from mlx_manager.models.template_features import template_features
from mlx_manager.models.weights_meta import weights_info


@dataclass(frozen=True, slots=True)
class Quantization:
    bits: int | None
    group_size: int | None
    mode: str  # MLX: "affine", "mxfp4", ...; another library's quant_method otherwise
    mixed_bits: tuple[int, ...] = ()  # every bit width, when modules differ


@dataclass(frozen=True, slots=True)
class Badges:
    model_type: ModelType
    supports_tools: bool  # the chat template renders tools itself
    tool_calls: str | None  # "native", "prompted" (Hermes, by the server); None: no chat
    supports_thinking: bool
    thinking_toggle: bool
    has_chat_template: bool
    quantization: Quantization | None
    dtype: str | None
    precision: str  # one short label: "4-bit", "4/8-bit", "bfloat16", "?"
    parameters: int | None  # None: no readable safetensors header
    weight_bytes: int  # the tensors as stored


def model_badges(path: Path, name: str = "") -> Badges:
    """The badges of the model in `path` (`name` helps type detection, as in the catalog)."""
    config = read_config(path)
    model_type = detect_model_dir(path, name or path.name)
    features = template_features(path)
    weights = weights_info(path, config)
    quant = quantization_of(config, weights.packed_bits)
    dtype = weights.dtype or _config_dtype(config)
    chats = model_type.generates_text
    return Badges(
        model_type=model_type,
        supports_tools=chats and features.native_tools,
        tool_calls=("native" if features.native_tools else "prompted") if chats else None,
        supports_thinking=chats and features.thinking,
        thinking_toggle=chats and features.thinking_toggle,
        has_chat_template=features.has_template,
        quantization=quant,
        dtype=dtype,
        precision=_precision(quant, dtype),
        parameters=weights.parameters
        if weights.parameters or not weights.unreadable_bytes
        else None,
        weight_bytes=weights.stored_bytes,
    )


def quantization_of(
    config: dict[str, Any] | None, packed_bits: tuple[int, ...] = ()
) -> Quantization | None:
    """The model's quantization from config.json, or from the packed weights found."""
    config = config or {}
    mlx = config.get("quantization")
    if isinstance(mlx, dict) and "bits" in mlx:
        per_module = {v.get("bits") for v in mlx.values() if isinstance(v, dict)}
        widths = {b for b in (mlx.get("bits"), *per_module, *packed_bits) if isinstance(b, int)}
        return Quantization(
            _int(mlx.get("bits")),
            _int(mlx.get("group_size")),
            str(mlx.get("mode") or "affine"),
            tuple(sorted(widths)) if len(widths) > 1 else (),
        )
    other = config.get("quantization_config")
    if isinstance(other, dict) and (other.get("quant_method") or other.get("bits")):
        bits = other.get("bits") or other.get("weight_bits")
        return Quantization(
            _int(bits), _int(other.get("group_size")), str(other.get("quant_method") or "unknown")
        )
    if packed_bits:  # packed weights with no config entry: mlx-lm's defaults apply
        return Quantization(
            max(packed_bits), None, "affine", packed_bits if len(packed_bits) > 1 else ()
        )
    return None


def _precision(quant: Quantization | None, dtype: str | None) -> str:
    if quant is None:
        return dtype or "?"
    if quant.mixed_bits:
        return "/".join(str(b) for b in quant.mixed_bits) + "-bit"
    return f"{quant.bits}-bit" if quant.bits else quant.mode


def _config_dtype(config: dict[str, Any] | None) -> str | None:
    for key in ("torch_dtype", "dtype"):
        value = (config or {}).get(key)
        if isinstance(value, str):
            return value
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


Signature = tuple[int, tuple[tuple[str, int, int], ...]]


def signature(path: Path) -> Signature | None:
    """What changes when a model's files do: the directory's mtime and each top-level file's
    name, size and mtime (links followed: HF snapshots are links to blobs)."""
    try:
        files = []
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_file():
                    stat = entry.stat()
                    files.append((entry.name, stat.st_size, stat.st_mtime_ns))
        return path.stat().st_mtime_ns, tuple(sorted(files))
    except OSError:
        return None


class BadgeCache:
    """Badges per (directory, name), computed again only when `signature` changes."""

    def __init__(self, compute: Callable[[Path, str], Badges] = model_badges) -> None:
        self._compute = compute
        self._items: dict[tuple[Path, str], tuple[Signature | None, Badges]] = {}
        self._lock = threading.Lock()  # callers run in worker threads

    def get(self, path: Path, name: str = "") -> Badges:
        key, current = (path, name), signature(path)
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and hit[0] == current and current is not None:
            return hit[1]
        badges = self._compute(path, name)
        with self._lock:
            self._items[key] = (current, badges)
        return badges

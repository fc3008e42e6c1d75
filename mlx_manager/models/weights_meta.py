"""What a model's weights are, read from the safetensors headers alone (never the tensors).

A safetensors file opens with an 8-byte length and a JSON header naming each tensor's dtype,
shape and byte range, so parameter counts, stored bytes and dtypes cost one small read per
shard. MLX's quantized layers store a weight as packed uint32 (`X.weight`) beside its
`X.scales` (and, in affine mode, `X.biases`); such a weight counts as the values it packs
(32 / bits per uint32), and its scales and biases are not parameters. The bits come from
config.json's `quantization`, per module where a mixed-precision model names one (SmolLM2's
embedding is 8-bit, the rest 4-bit).
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_HEADER_BYTES = 100_000_000
DEFAULT_QUANT_BITS = 4  # mlx-lm's default, when a packed weight has no bits in config.json
_DTYPES = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U64": ("uint64", 8),
    "U32": ("uint32", 4),
    "U16": ("uint16", 2),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
_FLOATS = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}

Header = dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class WeightsInfo:
    parameters: int  # packed weights counted as the values they hold
    tensor_bytes: int  # bytes the tensors take as stored
    dtype: str | None  # the floating dtype holding most parameters outside packed weights
    packed_bits: tuple[int, ...]  # the bit widths of the packed (quantized) weights found
    unreadable_bytes: int  # size of the shards whose header could not be read

    @property
    def stored_bytes(self) -> int:
        """Bytes once loaded as stored (quantized weights stay packed)."""
        return self.tensor_bytes + self.unreadable_bytes

    @property
    def dense_float32_bytes(self) -> int:
        """Bytes once dequantized and upcast to float32 (what the CPU backend may do)."""
        return 4 * self.parameters + self.unreadable_bytes


def read_header(file: Path) -> Header | None:
    """The JSON header of one safetensors file; None when it is not one."""
    try:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER_BYTES:
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return None
    if not isinstance(header, dict):
        return None
    return {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def weights_info(path: Path, config: dict[str, Any] | None) -> WeightsInfo:
    """Parameters, stored bytes and dtype of every `*.safetensors` file in `path`."""
    tensors: Header = {}
    unreadable = 0
    for file in sorted(path.glob("*.safetensors")):
        header = read_header(file)
        if header is None:
            unreadable += _size(file)
        else:
            tensors.update(header)
    quant = _quant_config(config)
    parameters = stored = 0
    dtypes: Counter[str] = Counter()
    bits_seen: set[int] = set()
    for name, info in tensors.items():
        count, dtype = _count(info), str(info.get("dtype"))
        stored += _stored_bytes(info, count, dtype)
        module = name.rsplit(".", 1)[0]
        if name.endswith((".scales", ".biases")) and _is_packed(tensors, module):
            continue  # quantization constants, not parameters
        if name.endswith(".weight") and _is_packed(tensors, module):
            bits = _bits_of(quant, module)
            bits_seen.add(bits)
            parameters += count * 32 // bits  # 3, 5, 6 bits straddle words
            continue
        parameters += count
        if dtype in _FLOATS:
            dtypes[_DTYPES[dtype][0]] += count
    dominant = dtypes.most_common(1)[0][0] if dtypes else None
    return WeightsInfo(parameters, stored, dominant, tuple(sorted(bits_seen)), unreadable)


def _is_packed(tensors: Header, module: str) -> bool:
    weight = tensors.get(f"{module}.weight")
    return weight is not None and weight.get("dtype") == "U32" and f"{module}.scales" in tensors


def _quant_config(config: dict[str, Any] | None) -> dict[str, Any]:
    quant = (config or {}).get("quantization") or (config or {}).get("quantization_config")
    return quant if isinstance(quant, dict) else {}


def _bits_of(quant: dict[str, Any], module: str) -> int:
    """The module's own bits (mixed precision), else the model's, else mlx-lm's default."""
    own = quant.get(module)
    for source in (own if isinstance(own, dict) else {}, quant):
        bits = source.get("bits")
        if isinstance(bits, int) and bits in (1, 2, 3, 4, 5, 6, 8):
            return bits
    return DEFAULT_QUANT_BITS


def _count(info: dict[str, Any]) -> int:
    shape = info.get("shape")
    count = 1
    for dim in shape if isinstance(shape, list) else []:
        count *= int(dim)
    return count


def _stored_bytes(info: dict[str, Any], count: int, dtype: str) -> int:
    offsets = info.get("data_offsets")
    if isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets):
        return int(offsets[1] - offsets[0])
    return count * _DTYPES.get(dtype, ("", 4))[1]


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0

"""The pool's limits and how big a model will be before it is loaded.

The budget is the lower of `--max-memory-gb` and `--memory-limit-pct` of the device's memory
(MLX's `memory_size` where it reports one: unified memory on Metal, the GPU's on CUDA; the
machine's RAM on the CPU backend). A model costs its weights plus its KV pool. Before a load
the weights are estimated from the safetensors headers (the bytes the tensors will take, as
dense float32 where the CPU backend will upcast them); after the load the pool books the real
numbers read from MLX.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from mlx_manager.config import PoolConfig

GB = 1e9
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U32": 4, "I8": 1}


@dataclass(frozen=True, slots=True)
class Limits:
    max_models: int | None
    max_bytes: int | None

    @property
    def bounded(self) -> bool:
        return self.max_models is not None or self.max_bytes is not None


def device_memory_bytes() -> int:
    """Memory of the device MLX runs on (RAM on the CPU backend)."""
    import mlx.core as mx

    info = mx.device_info()
    size = info.get("memory_size") if isinstance(info, dict) else None
    if isinstance(size, int) and size > 0:
        return size
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def limits_for(config: PoolConfig, device_bytes: int | None = None) -> Limits:
    candidates: list[int] = []
    if config.max_memory_gb is not None:
        candidates.append(int(config.max_memory_gb * GB))
    if config.memory_limit_pct is not None:
        total = device_bytes if device_bytes is not None else device_memory_bytes()
        candidates.append(int(total * config.memory_limit_pct / 100))
    return Limits(config.max_models, min(candidates) if candidates else None)


def estimate_loaded_weight_bytes(path: Path, cpu_float32_max_gb: float) -> int:
    """Weights once loaded, counting the CPU backend's float32 upcast where it will happen."""
    import mlx.core as mx

    if cpu_float32_max_gb > 0 and mx.default_device().type == mx.DeviceType.cpu:
        dense = estimate_weight_bytes(path, dense_float32=True)
        if dense <= cpu_float32_max_gb * GB:
            return dense
    return estimate_weight_bytes(path, dense_float32=False)


def estimate_weight_bytes(path: Path, dense_float32: bool) -> int:
    """Bytes the weights in `path` take once loaded (as float32 when `dense_float32`)."""
    bits = _quant_bits(path)
    total = 0
    for file in sorted(path.glob("*.safetensors")):
        header = _safetensors_header(file)
        if header is None:
            total += _size(file)
            continue
        total += _tensor_bytes(header, bits if dense_float32 else None)
    return total


def _tensor_bytes(header: dict[str, dict[str, object]], quant_bits: int | None) -> int:
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape = info.get("shape")
        count = 1
        for dim in shape if isinstance(shape, list) else []:
            count *= int(dim)
        dtype = str(info.get("dtype"))
        if quant_bits is None:
            total += count * _DTYPE_BYTES.get(dtype, 4)
        elif name.endswith((".scales", ".biases")):
            continue  # folded into the dense weight
        elif dtype == "U32" and name.endswith(".weight"):
            total += 4 * count * (32 // quant_bits)
        else:
            total += 4 * count
    return total


def _quant_bits(path: Path) -> int:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        quant = config.get("quantization") or config.get("quantization_config") or {}
        return int(quant.get("bits", 4))
    except (OSError, ValueError, AttributeError, TypeError):
        return 4


def _safetensors_header(file: Path) -> dict[str, dict[str, object]] | None:
    try:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return None
    return header if isinstance(header, dict) else None


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0


def dir_size_bytes(path: Path) -> int:
    """Size on disk of a model directory (symlinks followed, as in HF snapshots)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += _size(Path(root) / name)
    return total

"""The pool's limits and how big a model will be before it is loaded.

The budget is the lower of `--max-memory-gb` and `--memory-limit-pct` of the device's memory
(MLX's `memory_size` where it reports one: unified memory on Metal, the GPU's on CUDA; the
machine's RAM on the CPU backend). A model costs its weights plus its KV pool. Before a load
the weights are estimated from the safetensors headers (the bytes the tensors will take, as
dense float32 where the CPU backend will upcast them); after the load the pool books the real
numbers read from MLX.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlx_manager.config import PoolConfig
from mlx_manager.models.detection import read_config
from mlx_manager.models.weights_meta import weights_info

GB = 1e9


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

    info = weights_info(path, read_config(path))
    on_cpu = mx.default_device().type == mx.DeviceType.cpu
    if on_cpu and 0 < info.dense_float32_bytes <= cpu_float32_max_gb * GB:
        return info.dense_float32_bytes  # densify_for_cpu will upcast it
    return info.stored_bytes


def estimate_weight_bytes(path: Path, dense_float32: bool) -> int:
    """Bytes the weights in `path` take once loaded (as float32 when `dense_float32`)."""
    info = weights_info(path, read_config(path))
    return info.dense_float32_bytes if dense_float32 else info.stored_bytes


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

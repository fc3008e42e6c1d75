"""The engine's side of the model pool: loads and unloads run on the engine thread.

The pool decides what to load and evict; this host does the MLX work on the one thread that
owns MLX (`EngineThread.call`), builds or removes the model's engine, and reads each model's
real cost from MLX: the parameters' bytes, its preallocated KV pool, and MLX's active-memory
growth across the load.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from mlx_manager.config import EngineConfig, ModelsConfig
from mlx_manager.engine.core import EngineCore
from mlx_manager.engine.loop import EngineThread
from mlx_manager.errors import ApiError, ModelLoadFailed, ModelNotSupported
from mlx_manager.models.detection import ModelType
from mlx_manager.models.loaded import LoadedModel, resolve_spec_dir
from mlx_manager.models.loaders import load_model
from mlx_manager.models.sources import ModelSpec
from mlx_manager.pool.budget import GB, estimate_loaded_weight_bytes
from mlx_manager.pool.catalog import CatalogEntry
from mlx_manager.pool.resident import LoadResult, ModelCost


@dataclass(frozen=True, slots=True)
class MlxMemory:
    active_bytes: int
    peak_bytes: int
    cache_bytes: int


class EngineModelHost:
    def __init__(
        self, thread: EngineThread, engine_config: EngineConfig, models_config: ModelsConfig
    ) -> None:
        self._thread = thread
        self._models_config = models_config
        self._kv_budget = int(engine_config.kv_cache_gb * GB)

    def estimate_bytes(self, entry: CatalogEntry) -> int:
        weights = estimate_loaded_weight_bytes(entry.path, self._models_config.cpu_float32_max_gb)
        return weights + self._kv_budget_of(entry)

    def _kv_budget_of(self, entry: CatalogEntry) -> int:
        """Only text models keep a preallocated KV pool (vision caches grow per sequence)."""
        return self._kv_budget if entry.model_type is ModelType.TEXT else 0

    async def resolve(self, specs: list[ModelSpec]) -> list[tuple[str, Path]]:
        """Each spec's local directory (may download or convert the embedded model)."""
        config = self._models_config

        def resolve_all(_: EngineCore) -> list[tuple[str, Path]]:
            return [
                (s.model_id, resolve_spec_dir(s, config.cache_dir, config.hub_timeout_s))
                for s in specs
            ]

        return await self._call(resolve_all)

    async def load(self, entry: CatalogEntry) -> LoadResult:
        config = self._models_config
        kv_budget = self._kv_budget_of(entry)

        def run(core: EngineCore) -> LoadResult:
            before = mx.get_active_memory()
            started = time.perf_counter()
            error: ApiError | None = None
            try:
                model = load_model(
                    entry.model_id,
                    entry.path,
                    entry.model_type,
                    config.context_length,
                    config.cpu_float32_max_gb,
                )
                weights = parameter_bytes(model.model)
                core.add_model(model)
            except Exception as exc:
                error = load_error(entry, exc)
            if error is not None:  # raised outside `except`: no traceback keeps weights alive
                model = None  # type: ignore[assignment]
                gc.collect()
                mx.clear_cache()
                raise error.with_traceback(None)
            kv = core.kv_bytes(entry.model_id)
            cost = ModelCost(
                weight_bytes=weights,
                kv_bytes=kv_budget if kv is None else kv,
                measured_bytes=mx.get_active_memory() - before,
                seconds=time.perf_counter() - started,
            )
            return LoadResult(model, cost)

        return await self._call(run)

    async def unload(self, model_id: str) -> LoadedModel | None:
        return await self._call(lambda core: core.remove_model(model_id))

    async def memory(self) -> MlxMemory:
        def read(_: EngineCore) -> MlxMemory:
            return MlxMemory(mx.get_active_memory(), mx.get_peak_memory(), mx.get_cache_memory())

        return await self._call(read)

    async def _call(self, fn: Any) -> Any:
        return await asyncio.wrap_future(self._thread.call(fn))


def parameter_bytes(model: Any) -> int:
    leaves: Any = tree_flatten(model.parameters())
    return sum(int(value.nbytes) for _, value in leaves)


def load_error(entry: CatalogEntry, exc: Exception) -> ApiError:
    """A failed load as a clear API error naming the model and the cause."""
    if isinstance(exc, ApiError):
        return exc
    cause = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ValueError) and "not supported" in str(exc):
        return ModelNotSupported(f"The model '{entry.model_id}' cannot be loaded here: {cause}")
    return ModelLoadFailed(
        f"Loading the model '{entry.model_id}' from {entry.path} failed: {cause}"
    )

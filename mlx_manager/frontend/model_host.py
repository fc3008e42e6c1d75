"""The pool's host: loads and unloads are engine commands, run on the engine thread.

The pool decides what to load and evict; this host sends the `LoadModel` / `UnloadModel`
commands and gets back each model's card (no weights) and its real cost read from MLX: the
parameters' bytes, its preallocated KV pool, and MLX's active-memory growth across the load.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mlx_manager.config import EngineConfig, ModelsConfig
from mlx_manager.engine import commands as cmd
from mlx_manager.engine.loop import EngineThread
from mlx_manager.models.detection import ModelType
from mlx_manager.models.sources import ModelSpec
from mlx_manager.pool.budget import GB, estimate_loaded_weight_bytes
from mlx_manager.pool.catalog import CatalogEntry


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
        return await self.execute(
            cmd.ResolveModels(tuple(specs), config.cache_dir, config.hub_timeout_s)
        )

    async def load(self, entry: CatalogEntry) -> cmd.LoadResult:
        config = self._models_config
        return await self.execute(
            cmd.LoadModel(
                entry.model_id,
                entry.path,
                entry.model_type,
                config.context_length,
                config.cpu_float32_max_gb,
                self._kv_budget_of(entry),
            )
        )

    async def unload(self, model_id: str) -> bool:
        return await self.execute(cmd.UnloadModel(model_id))

    async def memory(self) -> cmd.MlxMemory:
        return await self.execute(cmd.ReadMemory())

    async def execute(self, command: cmd.Command[cmd.R]) -> cmd.R:
        return await asyncio.wrap_future(self._thread.execute(command))

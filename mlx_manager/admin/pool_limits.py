"""The pool's limits, editable while the server runs: memory budget, model count, idle TTL.

Startup flags stay read-only configuration (DESIGN.md principle 8): a change made through the
admin API is a *live override*, kept in the store (`live_settings`, name `pool.limits`) and
applied again at the next start, shown beside the flags it overrides until an admin resets it
(`DELETE /admin/pool/limits`), which returns the pool to its flags. Each change and reset is
recorded in `admin_changes`.

Values are checked by PoolConfig's own bounds (the flags' bounds, written once in Settings),
so a value the command line refuses is refused here too. A change applies at once: least
recently used idle models are evicted until the pool fits; busy and pinned ones never are, so
the pool can stay over its new limits. Then a busy model is evicted when its last request
ends (if still needed), a pinned one only once unpinned or unloaded, and a new load first
evicts idle models and is refused (503, Retry-After) while none can make room.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from mlx_manager.config import PoolConfig
from mlx_manager.pool.budget import device_memory_bytes, limits_for
from mlx_manager.pool.pool import ModelPool
from mlx_manager.store.live_settings_repo import LiveSetting, LiveSettingsRepository

log = logging.getLogger(__name__)

SETTING = "pool.limits"
LIMIT_FIELDS = ("max_models", "max_memory_gb", "memory_limit_pct", "keep_alive_s")


def with_limits(config: PoolConfig, values: Mapping[str, Any]) -> PoolConfig:
    """`config` with some limit fields replaced (None: no limit), validated by PoolConfig's
    bounds; pydantic's ValidationError names the bad field."""
    unknown = set(values) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"not a pool limit: {', '.join(sorted(unknown))}")
    return PoolConfig.model_validate({**config.model_dump(), **values})


def limit_values(config: PoolConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in LIMIT_FIELDS}


class PoolLimits:
    def __init__(
        self,
        pool: ModelPool,
        startup: PoolConfig,
        device_bytes: Callable[[], int] = device_memory_bytes,
    ) -> None:
        self._pool = pool
        self._startup = startup
        self._current = startup
        self._device_bytes = functools.cache(device_bytes)  # read once, when a % needs it
        self._repo: LiveSettingsRepository | None = None
        self._override: LiveSetting | None = None

    async def attach(self, repo: LiveSettingsRepository) -> None:
        """Apply the stored override, if any, before the pool starts."""
        self._repo = repo
        stored = await repo.get(SETTING)
        if stored is None:
            return
        try:
            config = with_limits(self._startup, stored.value)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            log.error("the stored pool limits are not valid; using the flags: %s", exc)
            return
        self._apply(config)
        self._override = stored
        log.info(
            "pool limits: the live override set by %s at %s replaces the flags: %s",
            stored.updated_by,
            stored.updated_at.isoformat(),
            limit_values(config),
        )

    def view(self) -> dict[str, Any]:
        override = self._override
        limits = self._pool.limits
        return {
            "source": "override" if override is not None else "flags",
            "flags": limit_values(self._startup),
            "override": None
            if override is None
            else {
                **limit_values(self._current),
                "updated_by": override.updated_by,
                "updated_at": override.updated_at.isoformat(),
            },
            "effective": {
                **limit_values(self._current),
                "max_memory_bytes": limits.max_bytes,
                "device_memory_bytes": self._device_bytes()
                if self._current.memory_limit_pct is not None
                else None,
            },
            "over_limits": self._pool.over_limits(),
            "persisted": self._repo is not None,
        }

    async def update(
        self, values: Mapping[str, Any], actor: str
    ) -> tuple[dict[str, Any], list[str]]:
        """Change some limits (absent fields keep their value, None clears one); the new view
        and the ids of the models evicted to fit. ValueError when a value is out of bounds."""
        config = with_limits(self._current, values)
        body = limit_values(config)
        if self._repo is not None:  # stored first: a change that cannot be kept is not made
            self._override = await self._repo.put(SETTING, body, actor, "pool.limits.update")
        else:
            self._override = LiveSetting(SETTING, body, actor, datetime.now(UTC))
        evicted = self._apply(config)
        return self.view(), evicted

    async def reset(self, actor: str) -> tuple[dict[str, Any], list[str]]:
        """Drop the override: the flags' limits apply again."""
        if self._repo is not None:
            await self._repo.delete(SETTING, actor, "pool.limits.reset")
        self._override = None
        evicted = self._apply(self._startup)
        return self.view(), evicted

    def _apply(self, config: PoolConfig) -> list[str]:
        device = self._device_bytes() if config.memory_limit_pct is not None else None
        self._current = config
        return self._pool.set_limits(limits_for(config, device), config.keep_alive_s)

"""`GET /admin/models`: every servable model with its badges, memory fit and residency.

The rows join three sources, each owning its part: the catalog (id, origin, type, context
length the server uses, size on disk), the model's files (models/badges: tools, thinking,
quantization, parameters; cached per directory change) and the pool (estimate, residency,
whether a load fits now). Badges are computed in a worker thread: only file reads.

`fits_budget` is the rule the pool itself applies before a load: the model's bytes (the real
booked bytes once resident, else the pool's estimate: weights as this server will hold them,
dense float32 where the CPU backend upcasts, plus the KV pool of text models) are at most the
pool's memory budget. It says whether the model can ever be resident here (after evicting idle
models); `load_plan` says what a load would do now. With no memory budget it is null.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from mlx_manager.errors import ApiError
from mlx_manager.models.badges import BadgeCache, Badges
from mlx_manager.pool.catalog import CatalogEntry
from mlx_manager.pool.pool import ModelPool
from mlx_manager.pool.resident import Resident, ResidentState

FITS_RULE = (
    "fits_budget: the model's bytes (booked once resident, else the pre-load estimate: "
    "weights as loaded plus its KV pool) <= the pool's memory budget; null without a budget"
)


async def catalog_rows(
    pool: ModelPool,
    cache: BadgeCache,
    aliases: Mapping[str, str],
    failures: Mapping[str, str],
) -> list[dict[str, Any]]:
    """One row per catalog entry, in catalog order (configured models first)."""
    entries = pool.catalog.entries()
    badges = await asyncio.to_thread(_badges_of, cache, entries)
    names: dict[str, list[str]] = {}
    for alias, target in sorted(aliases.items()):
        names.setdefault(target, []).append(alias)
    return [
        _row(pool, entry, badges[entry.model_id], names.get(entry.model_id, []), failures)
        for entry in entries
    ]


def budget_view(pool: ModelPool) -> dict[str, Any]:
    status = pool.status()
    return {
        "max_memory_bytes": status.max_memory_bytes,
        "max_models": status.max_models,
        "used_bytes": status.used_bytes,
        "over_limits": pool.over_limits(),
        "fits_rule": FITS_RULE,
    }


def _badges_of(cache: BadgeCache, entries: list[CatalogEntry]) -> dict[str, Badges]:
    return {e.model_id: cache.get(e.path, e.model_id.rsplit("/", 1)[-1]) for e in entries}


def _row(
    pool: ModelPool,
    entry: CatalogEntry,
    badges: Badges,
    aliases: list[str],
    failures: Mapping[str, str],
) -> dict[str, Any]:
    resident = pool.resident(entry.model_id)
    estimate = _estimate(pool, entry)
    booked = resident.accounted_bytes if resident is not None and resident.cost else None
    plan = pool.residency(entry.model_id)
    return {
        "id": entry.model_id,
        "aliases": aliases,
        "source": entry.origin,
        "type": entry.model_type.value,
        "family": entry.family,
        "supports_tools": badges.supports_tools,
        "tool_calls": badges.tool_calls,
        "supports_thinking": badges.supports_thinking,
        "thinking_toggle": badges.thinking_toggle,
        "has_chat_template": badges.has_chat_template,
        "quantization": asdict(badges.quantization) if badges.quantization else None,
        "dtype": badges.dtype,
        "precision": badges.precision,
        "parameters": badges.parameters,
        "size_bytes": entry.size_bytes,
        "weight_bytes": badges.weight_bytes,
        "context_length": entry.context_length,
        "estimated_bytes": estimate,
        "booked_bytes": booked,
        "fits_budget": _fits(pool, booked if booked is not None else estimate),
        "load_plan": {"state": plan.state.value, "load_s": plan.load_s, "detail": plan.detail},
        "residency": _residency(resident),
        "load_error": failures.get(entry.model_id),
    }


def _estimate(pool: ModelPool, entry: CatalogEntry) -> int | None:
    try:
        return pool.estimate(entry)
    except (ApiError, OSError):
        return None


def _fits(pool: ModelPool, size: int | None) -> bool | None:
    budget = pool.limits.max_bytes
    return None if budget is None or size is None else size <= budget


def _residency(resident: Resident | None) -> dict[str, Any]:
    if resident is None:
        return {"state": "not_loaded", "loaded": False, "pinned": False, "in_flight": 0}
    return {
        "state": resident.state.value,  # loading, ready, unloading
        "loaded": resident.state is ResidentState.READY,
        "pinned": resident.pinned,
        "in_flight": resident.in_flight,
        "last_used": resident.last_used_wall,
        "loaded_at": resident.loaded_at or None,
        "keep_alive_s": resident.keep_alive_s,
    }

"""Which resident models to evict so one more fits: least recently used idle ones first.

Pure policy over the pool's records, decided synchronously on the event loop, so two loads
planned at the same moment can never pick the same victim or overbook the budget: a model
being loaded counts with its estimate, one being unloaded no longer counts (the engine thread
runs its unload before any load queued after it).
"""

from __future__ import annotations

from collections.abc import Iterable

from mlx_manager.errors import ModelLoadFailed, PoolFull
from mlx_manager.pool.budget import GB, Limits
from mlx_manager.pool.resident import Resident, ResidentState

RETRY_AFTER_S = 5


def plan_eviction(
    residents: Iterable[Resident], model_id: str, estimate: int, limits: Limits
) -> list[Resident]:
    """Victims (LRU first) to unload before `model_id` (costing `estimate`) may load.

    Raises ModelLoadFailed when the model alone exceeds the memory budget, PoolFull (503 with
    Retry-After) when only busy or pinned models stand in the way.
    """
    if limits.max_bytes is not None and estimate > limits.max_bytes:
        raise ModelLoadFailed(
            f"The model '{model_id}' needs about {estimate / GB:.2f} GB (weights + KV pool), "
            f"more than the pool's memory budget of {limits.max_bytes / GB:.2f} GB.",
            code="model_too_large",
        )
    counted = [r for r in residents if r.state is not ResidentState.UNLOADING]
    count = len(counted) + 1
    used = sum(r.accounted_bytes for r in counted) + estimate
    candidates = sorted((r for r in counted if r.evictable), key=lambda r: r.lru)
    victims: list[Resident] = []
    while _over(limits, count, used):
        if not candidates:
            raise PoolFull(_full_message(model_id, counted, limits), retry_after_s=RETRY_AFTER_S)
        victim = candidates.pop(0)
        victims.append(victim)
        count -= 1
        used -= victim.accounted_bytes
    return victims


def plan_trim(
    residents: Iterable[Resident], limits: Limits, keep: Resident | None = None
) -> list[Resident]:
    """Idle models (LRU first, never `keep`) to evict so the pool fits `limits` again: after
    a load whose real size beat its estimate, or when the limits were lowered. Busy and
    pinned models are never chosen, so the pool may stay over its limits (see `blockers`)."""
    counted = [r for r in residents if r.state is not ResidentState.UNLOADING]
    count, used = len(counted), sum(r.accounted_bytes for r in counted)
    candidates = (r for r in counted if r.evictable and r is not keep)
    victims: list[Resident] = []
    for victim in sorted(candidates, key=lambda r: r.lru):
        if not _over(limits, count, used):
            break
        victims.append(victim)
        count -= 1
        used -= victim.accounted_bytes
    return victims


def blockers(residents: Iterable[Resident]) -> str:
    """Which resident models cannot be evicted now, and why ("busy: a; pinned: b")."""
    counted = [r for r in residents if r.state is not ResidentState.UNLOADING]
    return _why(counted)


def over_budget(residents: Iterable[Resident], limits: Limits) -> bool:
    counted = [r for r in residents if r.state is not ResidentState.UNLOADING]
    return _over(limits, len(counted), sum(r.accounted_bytes for r in counted))


def _over(limits: Limits, count: int, used: int) -> bool:
    return (limits.max_models is not None and count > limits.max_models) or (
        limits.max_bytes is not None and used > limits.max_bytes
    )


def _full_message(model_id: str, counted: list[Resident], limits: Limits) -> str:
    why = _why(counted)
    limit = []
    if limits.max_models is not None:
        limit.append(f"max {limits.max_models} models")
    if limits.max_bytes is not None:
        limit.append(f"{limits.max_bytes / GB:.2f} GB")
    return (
        f"Cannot load the model '{model_id}' now: the model pool is full "
        f"({', '.join(limit)}) and no resident model can be evicted ({why or 'none idle'}). "
        f"Retry later."
    )


def _why(counted: list[Resident]) -> str:
    groups = {
        "busy": [r.model_id for r in counted if r.in_flight],
        "pinned": [r.model_id for r in counted if r.pinned],
        "loading": [r.model_id for r in counted if r.state is ResidentState.LOADING],
    }
    return "; ".join(f"{name}: {', '.join(ids)}" for name, ids in groups.items() if ids)

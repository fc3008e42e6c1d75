"""The model pool: which models are resident, loading them on demand, evicting, pinning, TTLs.

Why our own: mlx-lm's server holds one model and swaps it per request; serving several models
under a memory budget needs a policy layer that no MLX library provides. The pool loads,
accounts bytes, evicts and pins; it never runs a forward pass. The MLX work of a load or an
unload is the host's (the engine, on its own thread); everything here runs on the event loop,
so decisions are made without locks and without a race between planning and booking.

A request takes a `Lease` (`acquire`) and holds it until its last event: a leased model is
never evicted or idle-unloaded. Concurrent requests for a model being loaded share one load.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from mlx_manager.config import PoolConfig
from mlx_manager.engine.commands import LoadResult
from mlx_manager.errors import (
    ApiError,
    Conflict,
    ModelBusy,
    ModelNotFound,
    NotFound,
    PoolFull,
    shorten,
)
from mlx_manager.models.card import ModelCard
from mlx_manager.pool.budget import Limits, limits_for
from mlx_manager.pool.catalog import Catalog, CatalogEntry
from mlx_manager.pool.load_speed import LoadSpeed
from mlx_manager.pool.planner import (
    RETRY_AFTER_S,
    blockers,
    over_budget,
    plan_eviction,
    plan_trim,
)
from mlx_manager.pool.residency import Residency, ResidencyState, planned_residency
from mlx_manager.pool.resident import (
    Lease,
    ModelStatus,
    PoolStatus,
    Resident,
    ResidentState,
    model_status,
)

log = logging.getLogger(__name__)

_READY, _LOADING, _UNLOADING = ResidentState.READY, ResidentState.LOADING, ResidentState.UNLOADING


class ModelHost(Protocol):
    """Does the MLX side of loads and unloads (the engine implements it)."""

    def estimate_bytes(self, entry: CatalogEntry) -> int: ...
    async def load(self, entry: CatalogEntry) -> LoadResult: ...

    async def unload(self, model_id: str) -> bool:
        """True once unloaded; False when the engine refused (it still has work)."""
        ...


class ModelPool:
    def __init__(self, config: PoolConfig, host: ModelHost, limits: Limits | None = None) -> None:
        self._config = config
        self._host = host
        self.limits = limits if limits is not None else limits_for(config)
        self.catalog = Catalog()
        self._residents: dict[str, Resident] = {}
        self._lru = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.loads = 0
        self.evictions = 0
        self.idle_unloads = 0
        self.load_speed = LoadSpeed()  # measured from this pool's loads
        self._estimates: dict[str, int] = {}  # bytes a load would book, per model
        # Start-up models that failed to load, with the client-safe reason.
        self.startup_failures: dict[str, str] = {}

    async def start(self, catalog: Catalog, startup_ids: Sequence[str] = ()) -> None:
        """Load the pinned models, then each startup model that fits without evicting.

        A model that fails to load is recorded in `startup_failures` and the others are
        loaded and served; start-up fails only when no model is left to serve."""
        self.catalog = catalog
        unknown = [model_id for model_id in self._config.pin if model_id not in catalog]
        if unknown:
            raise ValueError(f"--pin names unknown model(s): {', '.join(unknown)}")
        failures: list[Exception] = []
        tried = 0
        for model_id in self._config.pin:
            tried += 1
            failures += await self._start_one(model_id, self.load(model_id, pin=True))
        for model_id in startup_ids:
            entry = catalog.get(model_id)
            if entry is None or model_id in self._residents or model_id in self.startup_failures:
                continue
            if self._fits(entry):
                tried += 1
                failures += await self._start_one(model_id, self._ready(entry, pinned=False))
            else:
                log.info("model %s loads on its first request (pool limits)", model_id)
        servable = [m for m in catalog.ids() if m not in self.startup_failures]
        if failures and len(failures) == tried and not servable:
            raise failures[0]
        self._start_sweeper()

    async def _start_one(self, model_id: str, load: Coroutine[Any, Any, object]) -> list[Exception]:
        """Run one start-up load; a failure is recorded (and returned), not raised."""
        try:
            await load
        except Exception as exc:
            message = exc.message if isinstance(exc, ApiError) else type(exc).__name__
            log.error("model %s failed to load; serving the others: %s", model_id, message)
            self.startup_failures[model_id] = message
            return [exc]
        return []

    async def stop(self) -> None:
        for task in [self._sweeper, *self._tasks]:
            if task is not None:
                task.cancel()

    def entry(self, model_id: str) -> CatalogEntry:
        entry = self.catalog.get(model_id)
        if entry is None:
            ids = self.catalog.ids()
            served = ", ".join(sorted(ids)[:20]) + (" ..." if len(ids) > 20 else "")
            raise ModelNotFound(
                f"The model '{shorten(model_id)}' does not exist or is not served here "
                f"(served: {served or 'none'}).",
                param="model",
            )
        return entry

    def resident(self, model_id: str) -> Resident | None:
        return self._residents.get(model_id)

    def card(self, model_id: str) -> ModelCard | None:
        """The card of a model loaded and ready now; None otherwise (nothing is loaded)."""
        resident = self._residents.get(model_id)
        if resident is None or resident.state is not _READY:
            return None
        return resident.loaded

    def is_loaded(self, model_id: str) -> bool:
        resident = self._residents.get(model_id)
        return resident is not None and resident.state is _READY

    def residency(self, model_id: str) -> Residency:
        """Whether `model_id` is resident, could load now (evicting what) and how long the
        load would take (the bytes it books over the measured load speed). Read only: nothing
        is loaded, evicted or booked."""
        entry = self.catalog.get(model_id)
        if entry is None:
            return Residency(model_id, ResidencyState.UNKNOWN, None, "not served here")
        resident = self._residents.get(model_id)
        if resident is not None and resident.state is _READY:
            return Residency(model_id, ResidencyState.RESIDENT, 0.0)
        if resident is not None and resident.state is _LOADING:
            load_s = self.load_speed.estimate_s(resident.estimate_bytes)
            left = max(load_s - (time.monotonic() - resident.created), 0.0)
            return Residency(model_id, ResidencyState.LOADING, left)
        try:
            estimate = self.estimate(entry)
        except (ApiError, OSError) as exc:
            return Residency(model_id, ResidencyState.UNKNOWN, None, str(exc))
        load_s = self.load_speed.estimate_s(estimate)
        return planned_residency(model_id, self._residents.values(), estimate, self.limits, load_s)

    def estimate(self, entry: CatalogEntry) -> int:
        """Bytes a load of `entry` would book (its weights as loaded plus its KV pool), from
        the files, remembered per model; ApiError or OSError when they cannot be read."""
        estimate = self._estimates.get(entry.model_id)
        if estimate is None:
            estimate = self._estimates[entry.model_id] = self._host.estimate_bytes(entry)
        return estimate

    async def acquire(self, model_id: str) -> Lease:
        """The model, loaded if needed; hold the lease until the request's last event."""
        resident = await self._ready(self.entry(model_id), pinned=False)
        resident.in_flight += 1
        self._touch(resident)
        return Lease(resident, self._release)

    async def load(self, model_id: str, *, pin: bool = True) -> ModelStatus:
        """Load (if needed) and pin: a pinned model is never evicted or idle-unloaded."""
        resident = self._residents.get(model_id)
        if resident is not None and pin:
            resident.pinned = True
        resident = await self._ready(self.entry(model_id), pinned=pin)
        resident.pinned = resident.pinned or pin
        self._touch(resident)
        return model_status(resident, time.monotonic())

    async def unload(self, model_id: str) -> None:
        """Unload now: 404 when not loaded, 409 while requests are in flight (never drains)."""
        while True:
            resident = self._residents.get(model_id)
            if resident is None:
                raise NotFound(f"The model '{model_id}' is not loaded.", code="model_not_loaded")
            if resident.state is _READY:
                break
            with contextlib.suppress(Exception):  # a failed load: the next pass says 404
                await asyncio.shield(resident.done)
        _refuse_if_sharded(resident)
        if resident.in_flight:
            raise ModelBusy(
                f"The model '{model_id}' has {resident.in_flight} request(s) in flight; "
                "retry when they finish.",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self._mark_unloading(resident)
        await self._unload(resident, "unloaded on request")

    def pin(self, model_id: str, pinned: bool) -> ModelStatus:
        """Pin or unpin a loaded (or loading) model, never reloading it; 404 if not loaded. An
        unpinned model's idle TTL starts now; it is evicted at once if the pool is over."""
        resident = self._residents.get(model_id)
        if resident is None or resident.state is _UNLOADING:
            raise NotFound(f"The model '{model_id}' is not loaded.", code="model_not_loaded")
        if not pinned:
            _refuse_if_sharded(resident)
        resident.pinned = pinned
        if not pinned:
            self._touch(resident)
            self._trim(None, "evicted: over the pool's limits once unpinned")
        return model_status(resident, time.monotonic())

    def set_limits(self, limits: Limits, keep_alive_s: float | None) -> list[str]:
        """New limits and default idle TTL, applied now: LRU idle models are evicted until the
        pool fits (their ids returned); busy ones when their last request ends (`_release`),
        pinned ones once unpinned."""
        self.limits = limits
        self._config = self._config.model_copy(update={"keep_alive_s": keep_alive_s})
        for resident in self._residents.values():
            resident.keep_alive_s = self._config.keep_alive_for(resident.model_id)
        self._start_sweeper()
        return self._trim(None, "evicted: over the pool's new limits")

    def over_limits(self) -> str | None:
        """None when the pool fits its limits, else what keeps it over them."""
        if not over_budget(self._residents.values(), self.limits):
            return None
        return blockers(self._residents.values()) or "models still loading"

    def sweep(self) -> list[str]:
        """Start unloading every idle model past its keep-alive; return their ids."""
        now = time.monotonic()
        expired = [
            r
            for r in self._residents.values()
            if r.evictable and r.keep_alive_s is not None and now - r.last_used >= r.keep_alive_s
        ]
        for resident in expired:
            self._mark_unloading(resident)
            self.idle_unloads += 1
            self._spawn(self._unload(resident, f"idle for {resident.keep_alive_s:g}s"))
        return [r.model_id for r in expired]

    def status(self) -> PoolStatus:
        now = time.monotonic()
        residents = list(self._residents.values())
        return PoolStatus(
            max_models=self.limits.max_models,
            max_memory_bytes=self.limits.max_bytes,
            used_bytes=sum(r.accounted_bytes for r in residents if r.state is not _UNLOADING),
            available_models=len(self.catalog),
            loads=self.loads,
            evictions=self.evictions,
            idle_unloads=self.idle_unloads,
            models=tuple(model_status(r, now) for r in residents),
        )

    async def _ready(self, entry: CatalogEntry, *, pinned: bool) -> Resident:
        while True:
            resident = self._residents.get(entry.model_id)
            if resident is None:
                resident = self._begin_load(entry, pinned)
            if resident.state is _READY:
                return resident  # no await after this check: nothing can evict it meanwhile
            await asyncio.shield(resident.done)

    def _begin_load(self, entry: CatalogEntry, pinned: bool) -> Resident:
        estimate = self._host.estimate_bytes(entry)
        victims = plan_eviction(self._residents.values(), entry.model_id, estimate, self.limits)
        keep_alive = self._config.keep_alive_for(entry.model_id)
        resident = Resident(entry, _LOADING, pinned, keep_alive, estimate, _future())
        self._residents[entry.model_id] = resident
        for victim in victims:
            self._mark_unloading(victim)
        self._spawn(self._load(resident, victims))
        return resident

    async def _load(self, resident: Resident, victims: list[Resident]) -> None:
        try:
            for index, victim in enumerate(victims):
                self.evictions += 1
                if not await self._unload(victim, f"evicted for {resident.model_id}"):
                    self._restore(victims[index + 1 :])
                    raise PoolFull(
                        f"Cannot load the model '{resident.model_id}' now: the model "
                        f"'{victim.model_id}' could not be evicted. Retry later.",
                        retry_after_s=RETRY_AFTER_S,
                    )
            result = await self._host.load(resident.entry)
        except BaseException as exc:
            if self._residents.get(resident.model_id) is resident:
                del self._residents[resident.model_id]
            error = exc if isinstance(exc, Exception) else ApiError("model load cancelled")
            resident.done.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            log.warning("loading %s failed: %s", resident.model_id, exc)
            return
        resident.loaded, resident.cost = result.card, result.cost
        resident.state = _READY
        resident.loaded_at = time.time()
        self.loads += 1
        self.load_speed.record(result.cost.total_bytes, result.cost.seconds)
        self._touch(resident)
        resident.done.set_result(None)
        log.info(
            "model %s loaded in %.2fs (%.1f MB)",
            resident.model_id,
            result.cost.seconds,
            result.cost.total_bytes / 1e6,
        )
        self._trim(resident, f"evicted to fit {resident.model_id}")

    def _trim(self, keep: Resident | None, reason: str, warn: bool = True) -> list[str]:
        """Evict LRU idle models (never `keep`) until the pool fits its limits; their ids."""
        victims = plan_trim(self._residents.values(), self.limits, keep)
        for victim in victims:
            self._mark_unloading(victim)
            self.evictions += 1
            self._spawn(self._unload(victim, reason))
        if warn and over_budget(self._residents.values(), self.limits):
            log.warning(
                "model pool is over its limits; nothing idle left to evict (%s)",
                blockers(self._residents.values()),
            )
        return [v.model_id for v in victims]

    def _mark_unloading(self, resident: Resident) -> None:
        resident.state = _UNLOADING
        resident.done = _future()

    def _restore(self, victims: list[Resident]) -> None:
        """Victims marked for an eviction that did not happen: serve them again."""
        for victim in victims:
            if victim.state is _UNLOADING and not victim.done.done():
                victim.state = _READY
                victim.done.set_result(None)

    async def _unload(self, resident: Resident, reason: str) -> bool:
        try:
            unloaded = await self._host.unload(resident.model_id)
        except Exception:
            log.exception("unloading %s failed; dropping it from the pool", resident.model_id)
            unloaded = True
        if not unloaded:  # the engine still has work for it: serve it again
            log.warning("the engine refused to unload %s: it has work", resident.model_id)
            resident.state = _READY
        else:
            resident.loaded = None
            self._residents.pop(resident.model_id, None)
            log.info("model %s unloaded (%s)", resident.model_id, reason)
        resident.done.set_result(None)
        return unloaded

    def _release(self, resident: Resident) -> None:
        resident.in_flight -= 1
        self._touch(resident)
        if not resident.in_flight and over_budget(self._residents.values(), self.limits):
            self._trim(None, "evicted: over the pool's limits", warn=False)  # lowered live

    @property
    def keep_alive_s(self) -> float | None:  # the default; a --model-keep-alive wins
        return self._config.keep_alive_s

    def _touch(self, resident: Resident) -> None:
        resident.last_used = time.monotonic()
        resident.last_used_wall = time.time()
        resident.lru = next(self._lru)

    def _fits(self, entry: CatalogEntry) -> bool:
        try:
            estimate = self._host.estimate_bytes(entry)
            victims = plan_eviction(self._residents.values(), entry.model_id, estimate, self.limits)
            return not victims
        except ApiError as exc:
            log.warning("model %s is not loaded at startup: %s", entry.model_id, exc.message)
            return False

    def _start_sweeper(self) -> None:
        """(Re)start the idle sweeper at a quarter of the shortest TTL; none without TTLs."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        config = self._config
        ttls = [s for s in (config.keep_alive_s, *(s for _, s in config.model_keep_alive)) if s]
        if ttls:
            interval = min(max(min(ttls) / 4, 0.05), 5.0)
            self._sweeper = asyncio.create_task(self._sweep_forever(interval))

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _refuse_if_sharded(resident: Resident) -> None:
    """A sharded model's shards live in every rank of its group, for the group's life."""
    if resident.sharded:
        raise Conflict(
            f"The model '{resident.model_id}' is sharded over a distributed group of "
            f"{1 + len(resident.cost.rank_bytes) if resident.cost else 1} ranks: it stays "
            "loaded and pinned while the group runs.",
            code="model_sharded",
        )


def _future() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    # Mark a failure as seen even when no request waits for it (no "never retrieved" noise).
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future

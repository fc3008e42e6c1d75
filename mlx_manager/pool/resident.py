"""A model's life in the pool (loading -> ready -> unloading) and the lease a request holds."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mlx_manager.engine.commands import ModelCost
from mlx_manager.models.card import ModelCard
from mlx_manager.pool.catalog import CatalogEntry


class ResidentState(enum.StrEnum):
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"


@dataclass(slots=True, eq=False)
class Resident:
    entry: CatalogEntry
    state: ResidentState
    pinned: bool
    keep_alive_s: float | None
    estimate_bytes: int
    done: asyncio.Future[None]  # resolves when the current load or unload ends
    loaded: ModelCard | None = None  # the weights stay with the engine
    cost: ModelCost | None = None
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)
    last_used_wall: float = field(default_factory=time.time)
    lru: int = 0  # a counter, so equal timestamps still order
    loaded_at: float = 0.0
    created: float = field(default_factory=time.monotonic)  # a loading model: when it began

    @property
    def model_id(self) -> str:
        return self.entry.model_id

    @property
    def card(self) -> ModelCard:
        assert self.loaded is not None, f"{self.model_id} is not loaded"
        return self.loaded

    @property
    def accounted_bytes(self) -> int:
        """Real bytes once loaded; the estimate while loading."""
        return self.estimate_bytes if self.cost is None else self.cost.total_bytes

    @property
    def sharded(self) -> bool:
        """Loaded sharded over a distributed group: it stays for the group's life."""
        return self.cost is not None and bool(self.cost.rank_bytes)

    @property
    def evictable(self) -> bool:
        return self.state is ResidentState.READY and self.in_flight == 0 and not self.pinned


class Lease:
    """A request's hold on a resident model: while any lease is open it is never evicted."""

    __slots__ = ("_on_release", "_released", "resident")

    def __init__(self, resident: Resident, on_release: Callable[[Resident], None]) -> None:
        self.resident = resident
        self._on_release = on_release
        self._released = False

    @property
    def card(self) -> ModelCard:
        return self.resident.card

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._on_release(self.resident)


@dataclass(frozen=True, slots=True)
class ModelStatus:
    id: str
    type: str
    state: str
    pinned: bool
    in_flight: int
    last_used: float  # unix time
    idle_s: float
    keep_alive_s: float | None
    estimate_bytes: int
    weight_bytes: int
    kv_bytes: int
    total_bytes: int
    measured_bytes: int
    load_seconds: float
    loaded_at: float
    # Ranks holding it: 1, or a distributed group's size; the bytes each rank holds (rank 0
    # first: total_bytes), each rank's shard of the weights and of the KV pool.
    ranks: int = 1
    rank_bytes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PoolStatus:
    max_models: int | None
    max_memory_bytes: int | None
    used_bytes: int
    available_models: int
    loads: int
    evictions: int
    idle_unloads: int
    models: tuple[ModelStatus, ...]


def model_status(resident: Resident, now: float) -> ModelStatus:
    cost = resident.cost
    return ModelStatus(
        id=resident.model_id,
        type=resident.entry.model_type.value,
        state=resident.state.value,
        pinned=resident.pinned,
        in_flight=resident.in_flight,
        last_used=resident.last_used_wall,
        idle_s=0.0 if resident.in_flight else round(now - resident.last_used, 3),
        keep_alive_s=resident.keep_alive_s,
        estimate_bytes=resident.estimate_bytes,
        weight_bytes=cost.weight_bytes if cost else 0,
        kv_bytes=cost.kv_bytes if cost else 0,
        total_bytes=resident.accounted_bytes,
        measured_bytes=cost.measured_bytes if cost else 0,
        load_seconds=round(cost.seconds, 4) if cost else 0.0,
        loaded_at=resident.loaded_at,
        ranks=1 + len(cost.rank_bytes) if cost else 1,
        rank_bytes=(cost.total_bytes, *cost.rank_bytes) if cost and cost.rank_bytes else (),
    )

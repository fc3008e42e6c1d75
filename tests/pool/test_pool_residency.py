"""The pool's read-only residency answer and its measured load speed (fake host, no MLX)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

from mlx_manager.config import PoolConfig
from mlx_manager.engine.commands import LoadResult, ModelCost
from mlx_manager.models.card import ModelCard
from mlx_manager.models.detection import ModelType
from mlx_manager.pool.budget import Limits
from mlx_manager.pool.catalog import Catalog, CatalogEntry
from mlx_manager.pool.load_speed import PRIOR_BYTES_PER_S, LoadSpeed
from mlx_manager.pool.pool import ModelPool
from mlx_manager.pool.residency import ResidencyState

MB = 1_000_000
# id -> bytes a load books (weights + KV pool); each load takes 0.05 s.
SIZES = {"a": 10 * MB, "b": 10 * MB, "c": 30 * MB, "big": 4_000 * MB}
LOAD_S = 0.05
UNBOUNDED = Limits(None, None)


def entry(model_id: str) -> CatalogEntry:
    path = Path("/m") / model_id  # 1 byte on disk: the load speed counts booked bytes
    return CatalogEntry(model_id, path, "model-dir", ModelType.TEXT, 2048, "llama", 1, 0)


class Host:
    def __init__(self) -> None:
        self.loads: list[str] = []
        self.unloads: list[str] = []
        self.estimates = 0

    def estimate_bytes(self, entry: CatalogEntry) -> int:
        self.estimates += 1
        return SIZES[entry.model_id]

    async def load(self, entry: CatalogEntry) -> LoadResult:
        self.loads.append(entry.model_id)
        await asyncio.sleep(LOAD_S)
        size = self.estimate_bytes(entry)
        return LoadResult(cast(ModelCard, entry.model_id), ModelCost(size, 0, size, LOAD_S))

    async def unload(self, model_id: str) -> bool:
        self.unloads.append(model_id)
        return True


def run(
    test: Callable[[ModelPool, Host], Awaitable[None]],
    limits: Limits = UNBOUNDED,
    host: Host | None = None,
) -> None:
    async def main() -> None:
        fake = host or Host()
        pool = ModelPool(PoolConfig(), fake, limits)
        await pool.start(Catalog(entry(i) for i in SIZES))
        try:
            await test(pool, fake)
        finally:
            await pool.stop()

    asyncio.run(main())


async def use(pool: ModelPool, model_id: str) -> None:
    (await pool.acquire(model_id)).release()


def test_states_follow_the_eviction_plan_and_nothing_is_loaded() -> None:
    async def test(pool: ModelPool, host: Host) -> None:
        assert pool.residency("a").state is ResidencyState.FITS
        await pool.load("a", pin=True)
        assert pool.residency("a").state is ResidencyState.RESIDENT
        assert pool.residency("a").load_s == 0.0 and pool.residency("a").resident
        assert pool.residency("b").state is ResidencyState.FITS
        await use(pool, "b")
        idle = pool.residency("c")  # a pinned, b idle: c evicts b
        assert idle.state is ResidencyState.EVICTS_IDLE and idle.detail == "would evict b"
        lease = await pool.acquire("b")
        blocked = pool.residency("c")  # a pinned, b busy
        assert blocked.state is ResidencyState.BLOCKED and not blocked.can_load
        assert "pinned: a" in blocked.detail and "busy: b" in blocked.detail
        lease.release()
        assert pool.residency("nope").state is ResidencyState.UNKNOWN
        assert host.loads == ["a", "b"] and host.unloads == []  # asking changed nothing

    run(test, limits=Limits(2, None))


def test_pinned_models_filling_the_pool_block_every_other_model() -> None:
    async def test(pool: ModelPool, host: Host) -> None:
        await pool.load("a", pin=True)
        residency = pool.residency("b")
        assert residency.state is ResidencyState.BLOCKED and residency.load_s is not None
        assert host.loads == ["a"]

    run(test, limits=Limits(1, None))


def test_too_large_for_the_memory_budget() -> None:
    async def test(pool: ModelPool, host: Host) -> None:
        residency = pool.residency("big")
        assert residency.state is ResidencyState.TOO_LARGE and not residency.can_load
        assert residency.load_s is None and "memory budget" in residency.detail

    run(test, limits=Limits(None, 1000 * MB))


def test_estimates_are_read_once_per_model() -> None:
    async def test(pool: ModelPool, host: Host) -> None:
        for _ in range(5):
            pool.residency("c")
        assert host.estimates == 1

    run(test)


def test_load_seconds_from_the_prior_then_from_measured_loads() -> None:
    async def test(pool: ModelPool, host: Host) -> None:
        assert pool.residency("c").load_s == pytest.approx(30 * MB / PRIOR_BYTES_PER_S)
        await use(pool, "a")  # 10 MB in 0.05 s: 200 MB/s
        assert pool.load_speed.bytes_per_s == pytest.approx(10 * MB / LOAD_S)
        assert pool.residency("c").load_s == pytest.approx(30 * MB / (10 * MB / LOAD_S))

    run(test)


def test_a_model_being_loaded_is_loading_with_the_time_left() -> None:
    async def test(pool: ModelPool, host: Host) -> None:
        pending = asyncio.ensure_future(use(pool, "big"))
        await asyncio.sleep(0)
        residency = pool.residency("big")
        assert residency.state is ResidencyState.LOADING
        assert residency.load_s is not None and 0 < residency.load_s <= 4.0
        await pending
        assert pool.residency("big").state is ResidencyState.RESIDENT

    run(test)


def test_load_speed_is_all_bytes_over_all_seconds() -> None:
    speed = LoadSpeed()
    assert not speed.measured and speed.estimate_s(2 * 10**9) == pytest.approx(2.0)
    speed.record(100 * MB, 1.0)
    speed.record(900 * MB, 1.0)
    speed.record(0, 5.0)  # not a measurement
    assert speed.measured and speed.bytes_per_s == pytest.approx(500 * MB)
    assert speed.estimate_s(1000 * MB) == pytest.approx(2.0)

"""The pool's policy with a fake host (no MLX): LRU order, pins, leases, single flight, TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from mlx_manager.config import PoolConfig
from mlx_manager.engine.commands import LoadResult, ModelCost
from mlx_manager.errors import ModelBusy, ModelLoadFailed, NotFound, PoolFull
from mlx_manager.models.card import ModelCard
from mlx_manager.models.detection import ModelType
from mlx_manager.pool.budget import Limits
from mlx_manager.pool.catalog import Catalog, CatalogEntry
from mlx_manager.pool.pool import ModelPool

IDS = ("a", "b", "c", "d", "bad", "vis")
UNBOUNDED = Limits(None, None)


def entry(model_id: str) -> CatalogEntry:
    kind = ModelType.VISION if model_id == "vis" else ModelType.TEXT
    return CatalogEntry(model_id, Path("/m") / model_id, "model-dir", kind, 2048, "llama", 1, 0)


class FakeHost:
    def __init__(self, size: int = 100, delay: float = 0.0, refuse: bool = False) -> None:
        self.size = size
        self.delay = delay
        self.refuse = refuse
        self.loads: list[str] = []
        self.unloads: list[str] = []

    def estimate_bytes(self, entry: CatalogEntry) -> int:
        return self.size

    async def load(self, entry: CatalogEntry) -> LoadResult:
        self.loads.append(entry.model_id)
        await asyncio.sleep(self.delay)
        if entry.model_id == "bad":
            raise ModelLoadFailed("Loading the model 'bad' failed: corrupt safetensors")
        card = cast(ModelCard, entry.model_id)
        return LoadResult(card, ModelCost(self.size, 0, self.size, self.delay))

    async def unload(self, model_id: str) -> bool:
        self.unloads.append(model_id)
        return not self.refuse


def run(
    test: Callable[[ModelPool, FakeHost], Awaitable[None]],
    host: FakeHost | None = None,
    limits: Limits = UNBOUNDED,
    **config: Any,
) -> None:
    async def main() -> None:
        fake = host or FakeHost()
        pool = ModelPool(PoolConfig(**config), fake, limits)
        await pool.start(Catalog(entry(i) for i in IDS))
        try:
            await test(pool, fake)
        finally:
            await pool.stop()

    asyncio.run(main())


async def use(pool: ModelPool, *model_ids: str) -> None:
    for model_id in model_ids:
        (await pool.acquire(model_id)).release()


def resident(pool: ModelPool) -> set[str]:
    return {m.id for m in pool.status().models}


def test_evicts_least_recently_used_by_count() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await use(pool, "a", "b", "c", "a")  # b is the LRU
        await use(pool, "d")
        assert host.unloads == ["b"] and resident(pool) == {"a", "c", "d"}
        await use(pool, "b")
        assert host.unloads == ["b", "c"]

    run(test, limits=Limits(3, None))


def test_evicts_least_recently_used_by_memory() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await use(pool, "a", "b")
        await use(pool, "c")  # 3 x 40 > 100: a goes
        assert host.unloads == ["a"] and pool.status().used_bytes == 80

    run(test, host=FakeHost(size=40), limits=Limits(None, 100))


def test_pinned_and_leased_models_are_never_evicted() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await pool.load("a", pin=True)
        lease = await pool.acquire("b")
        await use(pool, "c")  # a is pinned, b is leased: c waits its turn
        await use(pool, "d")
        assert host.unloads == ["c"]
        assert resident(pool) == {"a", "b", "d"}
        lease.release()

    run(test, limits=Limits(3, None))


def test_nothing_evictable_is_pool_full() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await pool.load("a", pin=True)
        lease = await pool.acquire("b")
        with pytest.raises(PoolFull) as raised:
            await pool.acquire("c")
        assert raised.value.status == 503 and raised.value.headers["Retry-After"] == "5"
        assert "busy: b" in raised.value.message and "pinned: a" in raised.value.message
        lease.release()
        lease.release()  # idempotent
        await use(pool, "c")
        assert host.unloads == ["b"]

    run(test, limits=Limits(2, None))


def test_model_larger_than_budget_fails_clearly() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        with pytest.raises(ModelLoadFailed) as raised:
            await pool.acquire("a")
        assert raised.value.code == "model_too_large"
        assert host.loads == []

    run(test, host=FakeHost(size=200), limits=Limits(None, 100))


def test_concurrent_acquires_share_one_load() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        leases = await asyncio.gather(*(pool.acquire("a") for _ in range(8)))
        assert host.loads == ["a"]
        assert pool.resident("a").in_flight == 8  # type: ignore[union-attr]
        for lease in leases:
            lease.release()

    run(test, host=FakeHost(delay=0.05))


def test_concurrent_loads_of_different_models_pick_different_victims() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await use(pool, "a", "b")
        await asyncio.gather(use(pool, "c"), use(pool, "d"))
        assert sorted(host.unloads) == ["a", "b"] and resident(pool) == {"c", "d"}

    run(test, host=FakeHost(delay=0.02), limits=Limits(2, None))


def test_failed_load_leaves_the_pool_serving() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await use(pool, "a")
        results = await asyncio.gather(
            *(pool.acquire("bad") for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, ModelLoadFailed) for r in results)
        assert host.loads == ["a", "bad"]  # the waiters shared the one failed load
        assert resident(pool) == {"a"} and host.unloads == []
        with pytest.raises(ModelLoadFailed):  # tried again, fails again, clearly
            await pool.acquire("bad")
        await use(pool, "a")

    run(test, limits=Limits(2, None))


def test_unknown_models() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        with pytest.raises(NotFound) as unknown:
            await pool.acquire("../etc")
        assert (
            unknown.value.status == 404 and "served: a, b, bad, c, d, vis" in unknown.value.message
        )
        assert host.loads == []

    run(test)


def test_unload_404_409_and_pinned() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        with pytest.raises(NotFound):
            await pool.unload("a")
        await pool.load("a", pin=True)
        lease = await pool.acquire("a")
        with pytest.raises(ModelBusy) as busy:
            await pool.unload("a")
        assert busy.value.status == 409 and busy.value.headers["Retry-After"]
        lease.release()
        await pool.unload("a")  # pinned models unload on request
        assert host.unloads == ["a"] and resident(pool) == set()

    run(test)


def test_engine_refusing_an_unload_keeps_the_model_served() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await use(pool, "a")
        await pool.unload("a")
        assert pool.is_loaded("a")
        assert (await pool.acquire("a")).card == "a"

    run(test, host=FakeHost(refuse=True))


def test_idle_ttl_unloads_unless_pinned_or_kept() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await use(pool, "a", "b", "c")
        lease = await pool.acquire("d")
        await asyncio.sleep(0.25)
        assert sorted(host.unloads) == ["b"]  # a: never; c: pinned; d: leased
        assert pool.idle_unloads == 1
        lease.release()
        await asyncio.sleep(0.25)
        assert sorted(host.unloads) == ["b", "d"]

    run(test, keep_alive_s=0.05, model_keep_alive=(("a", 0.0),), pin=("c",))

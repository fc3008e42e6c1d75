"""Limits changed while the pool runs, and pins changed without a reload (fake host, no MLX):
LRU idle models go at once, busy ones when their last request ends, pinned ones only once
unpinned; the default idle TTL applies to resident models and starts the sweeper."""

from __future__ import annotations

import asyncio

from mlx_manager.errors import NotFound
from mlx_manager.pool.budget import Limits
from mlx_manager.pool.pool import ModelPool
from tests.pool.test_pool_unit import FakeHost, resident, run, use


async def settle() -> None:
    for _ in range(5):  # evictions run as tasks
        await asyncio.sleep(0)


def test_lower_count_evicts_lru_idle_at_once() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await use(pool, "a", "b", "c", "a")  # LRU order: b, c, a
        evicted = pool.set_limits(Limits(1, None), None)
        await settle()
        assert evicted == ["b", "c"] and host.unloads == ["b", "c"]
        assert resident(pool) == {"a"} and pool.over_limits() is None
        assert pool.status().max_models == 1 and pool.evictions == 2

    run(test)


def test_lower_budget_keeps_busy_and_pinned_then_evicts_busy_when_done() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await pool.load("a", pin=True)
        lease = await pool.acquire("b")
        await use(pool, "c")
        evicted = pool.set_limits(Limits(None, 100), None)  # room for one of three
        await settle()
        assert evicted == ["c"] and resident(pool) == {"a", "b"}
        assert pool.over_limits() == "busy: b; pinned: a"
        lease.release()  # b's last request: evicted now, the pool is still over
        await settle()
        assert host.unloads == ["c", "b"] and resident(pool) == {"a"}
        assert pool.over_limits() is None

    run(test, host=FakeHost(size=100))


def test_unpin_evicts_when_over_and_pin_never_reloads() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await pool.load("a", pin=True)
        await use(pool, "b")
        assert pool.pin("b", True).pinned and host.loads == ["a", "b"]  # no reload
        pool.set_limits(Limits(1, None), None)
        await settle()
        assert resident(pool) == {"a", "b"} and pool.over_limits() == "pinned: a, b"
        status = pool.pin("a", False)
        await settle()
        assert status.pinned is False and host.unloads == ["a"] and resident(pool) == {"b"}
        try:
            pool.pin("c", True)
        except NotFound as exc:
            assert exc.code == "model_not_loaded"
        else:
            raise AssertionError("pinning a model that is not loaded must be a 404")

    run(test)


def test_unpin_within_limits_keeps_the_model() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await pool.load("a", pin=True)
        pool.pin("a", False)
        await settle()
        assert resident(pool) == {"a"} and host.unloads == []
        assert pool.status().models[0].pinned is False

    run(test, limits=Limits(2, None))


def test_idle_ttl_set_live_applies_to_resident_models() -> None:
    async def test(pool: ModelPool, host: FakeHost) -> None:
        await use(pool, "a", "b")
        assert pool.keep_alive_s is None
        pool.set_limits(Limits(None, None), 0.1)
        assert {m.keep_alive_s for m in pool.status().models} == {0.1, None}  # b: per model 0
        await asyncio.sleep(0.5)  # the sweeper started with the new TTL
        assert host.unloads == ["a"] and resident(pool) == {"b"}
        pool.set_limits(Limits(None, None), None)
        await use(pool, "a")
        await asyncio.sleep(0.3)
        assert resident(pool) == {"a", "b"}  # no TTL: never idle-unloaded

    run(test, model_keep_alive=(("b", 0.0),))

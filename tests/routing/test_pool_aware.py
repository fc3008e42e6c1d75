"""Pool-aware routing: a real ModelPool on a fake host as the residency source, fake providers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

from mlx_manager.config import PoolConfig, RouteSettings
from mlx_manager.engine.commands import LoadResult, ModelCost
from mlx_manager.errors import LoadOverBudget, UpstreamUnavailable
from mlx_manager.models.card import ModelCard
from mlx_manager.models.detection import ModelType
from mlx_manager.pool.budget import Limits
from mlx_manager.pool.catalog import Catalog, CatalogEntry
from mlx_manager.pool.pool import ModelPool
from mlx_manager.pool.residency import Residency, ResidencyState
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.failover import Cooldowns, RoutedStream
from mlx_manager.routing.pool_aware import PoolAware, skip_reason
from mlx_manager.routing.rules import RuleSet
from mlx_manager.routing.service import GenerationService
from mlx_manager.security.principal import ANONYMOUS
from mlx_manager.types import FinishReason, GenerateRequest, GenerationEvent, SamplingParams

SIZE = 500_000_000  # booked by a load: 0.5 s at the 1 GB/s prior


@pytest.mark.parametrize(
    ("state", "load_s", "budget", "skipped"),
    [
        (ResidencyState.RESIDENT, 0.0, 0.0, False),
        (ResidencyState.FITS, 2.0, None, False),
        (ResidencyState.FITS, 2.0, 5.0, False),
        (ResidencyState.FITS, 2.0, 1.0, True),
        (ResidencyState.EVICTS_IDLE, 2.0, 0.0, True),
        (ResidencyState.LOADING, 0.5, 1.0, False),
        (ResidencyState.BLOCKED, 0.1, None, True),
        (ResidencyState.TOO_LARGE, None, None, True),
        (ResidencyState.UNKNOWN, None, 0.0, False),  # the pool answers (404) if tried
    ],
)
def test_skip_reasons(
    state: ResidencyState, load_s: float | None, budget: float | None, skipped: bool
) -> None:
    reason = skip_reason(Residency("m", state, load_s, "why"), budget)
    assert (reason is not None) is skipped


class Host:
    def __init__(self) -> None:
        self.loads: list[str] = []

    def estimate_bytes(self, entry: CatalogEntry) -> int:
        return SIZE

    async def load(self, entry: CatalogEntry) -> LoadResult:
        self.loads.append(entry.model_id)
        return LoadResult(cast(ModelCard, entry.model_id), ModelCost(SIZE, 0, SIZE, 0.5))

    async def unload(self, model_id: str) -> bool:
        return True


def entry(model_id: str) -> CatalogEntry:
    path = Path("/m") / model_id
    return CatalogEntry(model_id, path, "model-dir", ModelType.TEXT, 2048, "llama", 1, 0)


class Stream:
    prompt_tokens = 1

    def __init__(self, text: str) -> None:
        self.text = text

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        yield GenerationEvent("r", text=self.text)
        yield GenerationEvent("r", finish_reason=FinishReason.STOP)

    def abort(self) -> None:
        pass


class Provider:
    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.name = name
        self.error = error
        self.left_machine = name != "local"
        self.models: list[str] = []

    async def submit(self, request: GenerateRequest) -> Stream:
        self.models.append(request.model)
        if self.error is not None:
            raise self.error
        return Stream(f"{self.name}:{request.model}")

    async def count_tokens(self, request: GenerateRequest) -> int:
        return 1


def rule(pattern: str, *targets: tuple[str, str], budget: float | None = None) -> RouteSettings:
    return RouteSettings.model_validate(
        {
            "pattern": pattern,
            "targets": [{"provider": p, "model": m} for p, m in targets],
            "local_load_budget_s": budget,
        }
    )


RULES = [
    rule("chain", ("local", "b"), ("up", "r")),
    rule("budget-0", ("local", "b"), ("up", "r"), budget=0),
    rule("budget-10", ("local", "b"), ("up", "r"), budget=10),
    rule("pinned-0", ("local", "a"), ("up", "r"), budget=0),
    rule("lone", ("local", "b")),
]

Scenario = Callable[[GenerationService, ModelPool, Provider, Provider], Awaitable[None]]


def run(test: Scenario, limits: Limits, up_error: Exception | None = None) -> None:
    async def main() -> None:
        host = Host()
        pool = ModelPool(PoolConfig(pin=("a",)), host, limits)
        await pool.start(Catalog(entry(i) for i in ("a", "b")))
        local, up = Provider("local"), Provider("up", up_error)
        service = GenerationService(
            local,
            AliasTable(),
            {"up": up},
            RuleSet.build(RULES, AliasTable()),
            Cooldowns(1, 60.0),
            pool_aware=PoolAware(pool),
        )
        try:
            await test(service, pool, local, up)
            assert host.loads == ["a"]  # routing never loaded a model
        finally:
            await pool.stop()

    asyncio.run(main())


async def answer(service: GenerationService, model: str) -> tuple[str, str]:
    stream = await service.submit(GenerateRequest("r", model, SamplingParams()), ANONYMOUS)
    assert isinstance(stream, RoutedStream)
    return "".join([e.text async for e in stream]), stream.headers["x-mlx-manager-backend"]


def test_a_pool_full_of_pinned_models_sends_the_request_on_without_a_cooldown() -> None:
    async def test(
        service: GenerationService, pool: ModelPool, local: Provider, up: Provider
    ) -> None:
        for _ in range(2):
            assert await answer(service, "chain") == ("up:r", "up/r")
        assert local.models == []
        explained = service.explain("chain")["chain"]
        assert explained[0]["cooldown_s"] == 0.0  # a pool_budget skip never cools it down
        assert explained[0]["resident"] is False and explained[0]["residency"] == "blocked"
        assert "pinned: a" in explained[0]["residency_detail"]
        assert explained[0]["estimated_load_s"] == pytest.approx(0.5)
        assert "resident" not in explained[1]  # upstreams have no residency

    run(test, Limits(1, None))


def test_the_rules_load_budget() -> None:
    async def test(
        service: GenerationService, pool: ModelPool, local: Provider, up: Provider
    ) -> None:
        assert await answer(service, "budget-0") == ("up:r", "up/r")  # 0.5 s > 0 s
        assert await answer(service, "budget-10") == ("local:b", "local/b")
        assert await answer(service, "pinned-0") == ("local:a", "local/a")  # resident: no load
        assert local.models == ["b", "a"]
        assert service.explain("budget-0")["rule"]["local_load_budget_s"] == 0

    run(test, Limits(None, None))


def test_a_lone_local_target_is_always_tried() -> None:
    async def test(
        service: GenerationService, pool: ModelPool, local: Provider, up: Provider
    ) -> None:
        assert await answer(service, "lone") == ("local:b", "local/b")
        assert local.models == ["b"]

    run(test, Limits(1, None))


def test_a_cooling_next_target_means_the_local_one_is_tried() -> None:
    async def test(
        service: GenerationService, pool: ModelPool, local: Provider, up: Provider
    ) -> None:
        with pytest.raises(UpstreamUnavailable):  # b skipped, up fails and cools down
            await answer(service, "budget-0")
        assert local.models == [] and up.models == ["r"]
        assert await answer(service, "budget-0") == ("local:b", "local/b")

    run(test, Limits(None, None), up_error=UpstreamUnavailable("down"))


def test_the_skip_is_a_load_over_budget_error_naming_the_reason() -> None:
    async def test(
        service: GenerationService, pool: ModelPool, local: Provider, up: Provider
    ) -> None:
        route = service.route("budget-0")
        check = PoolAware(pool).precheck(route)
        assert check is not None
        with pytest.raises(LoadOverBudget, match="over the rule's local_load_budget_s of 0s"):
            check(route.targets[0])
        check(route.targets[1])  # an upstream target: never

    run(test, Limits(None, None))


def test_without_a_pool_nothing_is_skipped_or_described() -> None:
    rules = RuleSet.build(RULES, AliasTable())
    service = GenerationService(Provider("local"), AliasTable(), {"up": Provider("up")}, rules)
    assert asyncio.run(answer(service, "budget-0")) == ("local:b", "local/b")
    assert "resident" not in service.explain("budget-0")["chain"][0]

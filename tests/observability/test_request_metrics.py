"""Request metrics measured around an event stream (a fake stream: no engine needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry

from mlx_manager.observability.request_metrics import RequestMetrics
from mlx_manager.types import FinishReason, GenerateRequest, GenerationEvent, SamplingParams, Usage


class FakeStream:
    def __init__(self, events: list[GenerationEvent]) -> None:
        self._events = events
        self.aborted = False

    @property
    def prompt_tokens(self) -> int:
        return 5

    def abort(self) -> None:
        self.aborted = True

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[GenerationEvent]:
        for event in self._events:
            await asyncio.sleep(0.001)
            yield event


REQUEST = GenerateRequest("r", "m1", SamplingParams())
EVENTS = [
    GenerationEvent("r", "a", token_ids=(1,)),
    GenerationEvent("r", "bc", token_ids=(2, 3)),
    GenerationEvent("r", "", finish_reason=FinishReason.LENGTH, usage=Usage(5, 3, cached_tokens=2)),
]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, {"model_name": "m1", "backend": "local", **labels})
    return 0.0 if got is None else got


async def drain(stream: object) -> None:
    async for _ in stream:  # type: ignore[attr-defined]
        pass


def test_a_finished_request_is_counted_and_timed() -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry)
    asyncio.run(drain(metrics.observe(FakeStream(EVENTS), REQUEST, "local")))
    assert value(registry, "mlx_manager:time_to_first_token_seconds_count") == 1
    assert value(registry, "mlx_manager:inter_token_latency_seconds_count") == 1  # one gap
    assert value(registry, "mlx_manager:e2e_request_latency_seconds_count") == 1
    assert value(registry, "mlx_manager:prompt_tokens_total") == 5
    assert value(registry, "mlx_manager:generation_tokens_total") == 3
    assert value(registry, "mlx_manager:prefix_cache_hit_tokens_total") == 2
    assert value(registry, "mlx_manager:request_success_total", finished_reason="length") == 1


def test_a_reader_leaving_early_counts_an_abort() -> None:
    registry = CollectorRegistry()
    metrics = RequestMetrics(registry)
    stream = metrics.observe(FakeStream(EVENTS), REQUEST, "local")

    async def first_only() -> None:
        events = aiter(stream)
        await anext(events)
        await events.aclose()  # type: ignore[attr-defined]

    asyncio.run(first_only())
    assert value(registry, "mlx_manager:request_success_total", finished_reason="abort") == 1
    assert value(registry, "mlx_manager:e2e_request_latency_seconds_count") == 0

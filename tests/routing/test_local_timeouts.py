"""Local timeouts: the deadlines around the engine's stream (fake streams, sub-second waits)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from mlx_manager.config import LocalTimeouts, RouteSettings, Settings
from mlx_manager.errors import BackendTimeout, LocalTimeout
from mlx_manager.frontend.client import EngineClient
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.failover import Cooldowns, FailureClass, RoutedStream, classify
from mlx_manager.routing.providers.local import LocalProvider
from mlx_manager.routing.providers.timed_stream import TimedStream
from mlx_manager.routing.rules import RuleSet
from mlx_manager.routing.service import GenerationService
from mlx_manager.security.principal import ANONYMOUS
from mlx_manager.types import FinishReason, GenerateRequest, GenerationEvent, SamplingParams

NEVER = 30.0  # a delay no test waits out: the deadline ends it first


class Scripted:
    """An engine stream: each (delay, event) pair is sent after its delay; records abort."""

    prompt_tokens = 2

    def __init__(self, *script: tuple[float, GenerationEvent]) -> None:
        self.script = script
        self.aborted = False

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        for delay, event in self.script:
            await asyncio.sleep(delay)
            yield event

    def abort(self) -> None:
        self.aborted = True


def text(value: str) -> GenerationEvent:
    return GenerationEvent("r", text=value)


END = GenerationEvent("r", finish_reason=FinishReason.STOP)


def timeouts(**seconds: float) -> LocalTimeouts:
    return LocalTimeouts.model_validate(seconds)


async def drain(stream: TimedStream) -> list[GenerationEvent]:
    return [event async for event in stream]


def run_timed(inner: Scripted, **seconds: float) -> tuple[list[GenerationEvent], float]:
    async def main() -> tuple[list[GenerationEvent], float]:
        started = asyncio.get_running_loop().time()
        events = await drain(TimedStream(inner, timeouts(**seconds), started, "r", "m"))
        return events, asyncio.get_running_loop().time() - started

    return asyncio.run(main())


def error_of(event: GenerationEvent) -> LocalTimeout:
    assert event.finish_reason is FinishReason.ERROR and event.error is not None
    error = event.error.api_error()
    assert isinstance(error, LocalTimeout)
    return error


def test_defaults_are_documented_values() -> None:
    assert Settings().local_timeouts == timeouts(first_token_s=300, idle_s=120, total_s=900)
    assert Settings().routing().local_timeouts.total_s == 900


def test_an_answer_in_time_passes_untouched() -> None:
    inner = Scripted((0.0, text("a")), (0.01, text("b")), (0.0, END))
    events, _ = run_timed(inner, first_token_s=1, idle_s=1, total_s=2)
    assert [e.text for e in events] == ["a", "b", ""] and events[-1] is END
    assert not inner.aborted


def test_first_token_timeout_aborts_and_ends_with_a_timeout_event() -> None:
    inner = Scripted((NEVER, text("late")))
    events, elapsed = run_timed(inner, first_token_s=0.2)
    assert len(events) == 1 and elapsed < 1.0
    error = error_of(events[0])
    assert error.status == 504 and error.code == "local_timeout"
    assert "first token" in error.message and "0.2s" in error.message
    assert inner.aborted
    assert classify(error) is FailureClass.TIMEOUT and FailureClass.TIMEOUT.cools_down


def test_idle_gap_timeout_after_output() -> None:
    inner = Scripted((0.0, text("a")), (NEVER, text("late")))
    events, elapsed = run_timed(inner, first_token_s=5, idle_s=0.2)
    assert events[0].text == "a" and "next token" in error_of(events[1]).message
    assert len(events) == 2 and elapsed < 1.0 and inner.aborted


def test_total_timeout_ends_a_steady_stream() -> None:
    inner = Scripted(*((0.05, text("x")) for _ in range(100)))
    events, elapsed = run_timed(inner, first_token_s=5, idle_s=5, total_s=0.4)
    assert 3 <= len(events) < 100 and elapsed < 1.0
    assert "whole answer" in error_of(events[-1]).message and inner.aborted


def test_local_timeout_is_a_backend_timeout_in_both_dialects() -> None:
    error = LocalTimeout("slow")
    assert isinstance(error, BackendTimeout)
    assert error.openai_body()["error"]["code"] == "local_timeout"
    assert error.anthropic_status == 504 and error.anthropic_body()["type"] == "error"


# --- the provider: a slow load or queue before the stream exists ------------------------


class SlowClient:
    def __init__(self, delay: float, stream: Scripted) -> None:
        self.delay = delay
        self.stream = stream

    async def submit(self, request: GenerateRequest) -> Scripted:
        await asyncio.sleep(self.delay)  # a model load, or a wait for a queue slot
        return self.stream

    async def count_tokens(self, request: GenerateRequest) -> int:
        return 1


def provider(delay: float, stream: Scripted, **seconds: float) -> LocalProvider:
    return LocalProvider(cast(EngineClient, SlowClient(delay, stream)), timeouts(**seconds))


def request(model: str = "m") -> GenerateRequest:
    return GenerateRequest("r", model, SamplingParams(), prompt_text="x")


def test_a_slow_load_is_a_first_token_timeout_before_any_stream() -> None:
    local = provider(NEVER, Scripted((0.0, END)), first_token_s=0.2)
    started = time.monotonic()
    with pytest.raises(LocalTimeout, match="first token"):
        asyncio.run(local.submit(request()))
    assert time.monotonic() - started < 1.0


def test_the_load_counts_toward_the_first_token_deadline() -> None:
    inner = Scripted((0.2, text("a")), (0.0, END))

    async def main() -> list[GenerationEvent]:
        stream = await provider(0.2, inner, first_token_s=0.3).submit(request())
        return [event async for event in stream]

    events = asyncio.run(main())
    assert "first token" in error_of(events[0]).message and inner.aborted


class Upstream:
    name = "up"
    left_machine = False

    async def submit(self, request: GenerateRequest) -> Scripted:
        return Scripted((0.0, text(f"up:{request.model}")), (0.0, END))

    async def count_tokens(self, request: GenerateRequest) -> int:
        return 1


def chain_service(local: Any) -> GenerationService:
    rule = RouteSettings.model_validate(
        {
            "pattern": "chain",
            "targets": [{"provider": "local", "model": "loc"}, {"provider": "up", "model": "r"}],
        }
    )
    return GenerationService(
        local,
        AliasTable(),
        {"up": Upstream()},
        RuleSet.build([rule], AliasTable()),
        Cooldowns(3, 60.0),
    )


@pytest.mark.parametrize("load_delay", [0.0, NEVER])  # a stalled engine, a stalled load
def test_a_local_first_token_timeout_fails_over(load_delay: float) -> None:
    inner = Scripted((NEVER, text("late")))
    svc = chain_service(provider(load_delay, inner, first_token_s=0.2))

    async def main() -> tuple[str, dict[str, str]]:
        stream = await svc.submit(request("chain"), ANONYMOUS)
        assert isinstance(stream, RoutedStream)
        return "".join([e.text async for e in stream]), stream.headers

    answer, headers = asyncio.run(main())
    assert answer == "up:r" and headers["x-mlx-manager-backend"] == "up/r"
    assert inner.aborted is (load_delay == 0.0)  # a stalled load never made a stream

"""Failover decisions: failure classes, cooldowns, the chain (fake providers, no HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mlx_manager.config import RouteSettings
from mlx_manager.errors import (
    ApiError,
    ContextLengthExceeded,
    ErrorInfo,
    InternalError,
    InvalidRequest,
    LoadOverBudget,
    LocalTimeout,
    ModelBusy,
    ModelLoadFailed,
    ModelNotFound,
    Overloaded,
    PoolFull,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mlx_manager.frontend.admission import Admission
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.failover import Cooldowns, FailureClass, RoutedStream, classify
from mlx_manager.routing.rules import RuleSet
from mlx_manager.routing.service import GenerationService
from mlx_manager.security.principal import ANONYMOUS
from mlx_manager.types import FinishReason, GenerateRequest, GenerationEvent, SamplingParams, Usage


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (InvalidRequest("x"), FailureClass.CALLER),
        (ContextLengthExceeded("x"), FailureClass.CALLER),
        (ModelNotFound("x"), FailureClass.CALLER),
        (RateLimited("x"), FailureClass.RATE_LIMITED),
        (Overloaded("x"), FailureClass.OVERLOADED),
        (PoolFull("x"), FailureClass.OVERLOADED),
        (ModelLoadFailed("x"), FailureClass.SERVER),
        (InternalError("x"), FailureClass.SERVER),
        (ModelBusy("x"), FailureClass.CONFLICT),
        (UpstreamUnavailable("x"), FailureClass.UNREACHABLE),
        (UpstreamTimeout("x"), FailureClass.TIMEOUT),
        (LocalTimeout("x"), FailureClass.TIMEOUT),
        (LoadOverBudget("x"), FailureClass.POOL_BUDGET),
    ],
)
def test_failure_classes(error: ApiError, failure: FailureClass) -> None:
    assert classify(error) is failure
    assert failure.fails_over is (failure is not FailureClass.CALLER)
    assert failure.cools_down is (failure not in (FailureClass.CALLER, FailureClass.POOL_BUDGET))


def queue_full() -> ApiError:
    """What the local provider raises at --max-waiting-requests (the real admission)."""
    with pytest.raises(Overloaded) as raised:
        Admission(1, lambda: 1).admit()
    return raised.value


def test_cooldown_after_n_failures_and_retry_after_at_once() -> None:
    now = [100.0]
    cooldowns = Cooldowns(2, 30.0, clock=lambda: now[0])
    cooldowns.failed("a", InternalError("x"))
    assert cooldowns.remaining("a") == 0
    cooldowns.failed("a", InternalError("x"))
    assert cooldowns.remaining("a") == 30
    now[0] += 31
    assert cooldowns.remaining("a") == 0
    cooldowns.failed("b", RateLimited("x", headers={"Retry-After": "7"}))
    assert cooldowns.remaining("b") == 7  # the first failure, honouring Retry-After
    cooldowns.failed("c", InternalError("x"))
    cooldowns.succeeded("c")
    cooldowns.failed("c", InternalError("x"))
    assert cooldowns.remaining("c") == 0  # a success resets the count


class _Stream:
    prompt_tokens = 2

    def __init__(self, events: list[GenerationEvent]) -> None:
        self.events = events
        self.aborted = False

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[GenerationEvent]:
        for event in self.events:
            yield event

    def abort(self) -> None:
        self.aborted = True


class Fake:
    """A provider that fails with `error` at submit, or with an error as its first event."""

    def __init__(
        self, name: str, error: ApiError | None = None, event_error: ApiError | None = None
    ) -> None:
        self.name = name
        self.error, self.event_error = error, event_error
        self.calls = 0
        self.left_machine = name != "local"

    async def submit(self, request: GenerateRequest) -> _Stream:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.event_error is not None:
            info = ErrorInfo.of(self.event_error)
            return _Stream(
                [GenerationEvent(request.request_id, finish_reason=FinishReason.ERROR, error=info)]
            )
        return _Stream(
            [
                GenerationEvent(request.request_id, text=f"{self.name}:{request.model}"),
                GenerationEvent(
                    request.request_id, finish_reason=FinishReason.STOP, usage=Usage(1, 1)
                ),
            ]
        )

    async def count_tokens(self, request: GenerateRequest) -> int:
        return 1


def service(local: Fake, *ups: Fake, failures: int = 2) -> GenerationService:
    rule = RouteSettings.model_validate(
        {
            "pattern": "chain",
            "match": "exact",
            "targets": [
                {"provider": "local", "model": "loc"},
                *({"provider": u.name, "model": "rem"} for u in ups),
            ],
        }
    )
    return GenerationService(
        local,
        AliasTable(),
        {u.name: u for u in ups},
        RuleSet.build([rule], AliasTable()),
        Cooldowns(failures, 60.0),
    )


async def _answer(svc: GenerationService, model: str = "chain") -> tuple[str, dict[str, str]]:
    stream = await svc.submit(
        GenerateRequest("r", model, SamplingParams(), prompt_text="x"), ANONYMOUS
    )
    assert isinstance(stream, RoutedStream)
    text = "".join([e.text async for e in stream])
    return text, stream.headers


def test_local_failure_fails_over_to_the_upstream_and_the_header_names_it() -> None:
    for failing in (
        Fake("local", PoolFull("full")),
        Fake("local", ModelLoadFailed("corrupt")),
        Fake("local", queue_full()),
        Fake("local", event_error=InternalError("engine died")),
        Fake("local", event_error=LocalTimeout("no first token")),
    ):
        up = Fake("up")
        text, headers = asyncio.run(_answer(service(failing, up)))
        assert text == "up:rem"
        assert headers == {
            "x-mlx-manager-backend": "up/rem",
            "x-mlx-manager-data-left-machine": "true",
        }


def test_retry_after_cools_a_target_at_once() -> None:
    local, up = Fake("local", PoolFull("full", retry_after_s=20)), Fake("up")
    svc = service(local, up, failures=5)
    asyncio.run(_answer(svc))
    asyncio.run(_answer(svc))
    assert (local.calls, up.calls) == (1, 2)


def test_caller_errors_never_fail_over() -> None:
    local, up = Fake("local", InvalidRequest("bad")), Fake("up")
    with pytest.raises(InvalidRequest):
        asyncio.run(_answer(service(local, up)))
    assert up.calls == 0


def test_last_failure_is_raised_and_cooldown_skips_the_target() -> None:
    local, up = Fake("local", ModelLoadFailed("corrupt")), Fake("up", UpstreamUnavailable("down"))
    svc = service(local, up, failures=2)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            asyncio.run(_answer(svc))
    assert (local.calls, up.calls) == (2, 2)
    with pytest.raises(Overloaded, match="cooling down") as info:
        asyncio.run(_answer(svc))
    assert (local.calls, up.calls) == (2, 2)  # neither was tried
    assert int(info.value.headers["Retry-After"]) >= 59
    assert svc.explain("chain")["chain"][1]["cooldown_s"] > 59


def test_no_rule_goes_to_the_local_pool_unpeeked() -> None:
    local = Fake("local")
    text, headers = asyncio.run(_answer(service(local), "plain"))
    assert text == "local:plain"
    assert headers["x-mlx-manager-backend"] == "local/plain"
    assert headers["x-mlx-manager-data-left-machine"] == "false"

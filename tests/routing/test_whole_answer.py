"""A non-streamed request asked of an upstream whole (fake upstream on loopback): the answer,
the upstream's errors as error events (failover's classes), the deadline, abort."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from mlx_manager.config import ProviderSettings, UpstreamTimeouts
from mlx_manager.errors import (
    InternalError,
    InvalidRequest,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mlx_manager.routing.failover import FailureClass, classify
from mlx_manager.routing.providers.openai_compatible import OpenAICompatibleProvider
from mlx_manager.routing.providers.whole_answer import WholeAnswer
from mlx_manager.types import (
    ChatMessage,
    FinishReason,
    GenerateRequest,
    GenerationEvent,
    SamplingParams,
    Usage,
)
from tests.fixtures.fake_upstream import FakeUpstream
from tests.fixtures.server import free_port

TIMEOUTS = {"connect_s": 1, "first_token_s": 1, "idle_s": 0.5, "total_s": 5}
WHOLE = GenerateRequest(
    "r", "m", SamplingParams(), messages=(ChatMessage("user", "hi"),), stream=False
)


def provider(base_url: str, **timeouts: Any) -> OpenAICompatibleProvider:
    settings = {"name": "p", "kind": "openai_compatible", "base_url": base_url}
    return OpenAICompatibleProvider(
        ProviderSettings.model_validate({**settings, "timeouts": {**TIMEOUTS, **timeouts}})
    )


def events_of(base_url: str, request: GenerateRequest = WHOLE) -> list[GenerationEvent]:
    async def main() -> list[GenerationEvent]:
        up = provider(base_url)
        try:
            return [e async for e in await up.submit(request)]
        finally:
            await up.aclose()

    return asyncio.run(main())


def test_a_non_streamed_request_is_asked_whole_and_keeps_its_connection(
    fake_upstream: FakeUpstream,
) -> None:
    async def main() -> list[list[GenerationEvent]]:
        up = provider(f"{fake_upstream.base_url}/ok")
        try:
            answers = []
            for _ in range(3):
                stream = await up.submit(WHOLE)
                assert isinstance(stream, WholeAnswer)
                answers.append([e async for e in stream])
                assert stream.prompt_tokens == 3
            return answers
        finally:
            await up.aclose()

    fake_upstream.client_ports.clear()
    fake_upstream.streamed.clear()
    for events in asyncio.run(main()):
        assert "".join(e.text for e in events) == "Hi"
        assert events[-1].finish_reason is FinishReason.STOP
        assert events[-1].usage == Usage(3, 1)
    assert fake_upstream.streamed == [False] * 3
    assert len(set(fake_upstream.client_ports)) == 1, fake_upstream.client_ports


def test_a_streamed_request_still_streams(fake_upstream: FakeUpstream) -> None:
    fake_upstream.streamed.clear()
    events = events_of(f"{fake_upstream.base_url}/ok", dataclasses.replace(WHOLE, stream=True))
    assert "".join(e.text for e in events) == "Hi" and fake_upstream.streamed == [True]


@pytest.mark.parametrize(
    ("mode", "error_class", "failure"),
    [
        ("429", RateLimited, FailureClass.RATE_LIMITED),
        ("500", InternalError, FailureClass.SERVER),
        ("400", InvalidRequest, FailureClass.CALLER),
    ],
)
def test_upstream_errors_start_the_stream_as_error_events(
    fake_upstream: FakeUpstream, mode: str, error_class: type[Exception], failure: FailureClass
) -> None:
    """An error event first: a chain fails over on it (a caller error does not), as on a
    status raised by a streamed request; Retry-After is kept for the cooldown."""
    events = events_of(f"{fake_upstream.base_url}/{mode}/v1")
    assert len(events) == 1 and events[0].error is not None
    error = events[0].error.api_error()
    assert isinstance(error, error_class) and classify(error) is failure
    if mode == "429":
        assert error.headers.get("Retry-After") == "30"


def test_a_redirect_is_not_followed(fake_upstream: FakeUpstream) -> None:
    """Neither a whole answer (aiohttp directly) nor a stream (httpx) follows one: it could
    carry the key to another host. The stream's is raised at submit (before streaming)."""
    before = fake_upstream.hits["ok"]
    events = events_of(f"{fake_upstream.base_url}/redirect/v1")
    error = events[0].error.api_error() if events[0].error else None
    assert isinstance(error, UpstreamUnavailable) and "redirect" in error.message
    with pytest.raises(UpstreamUnavailable, match="redirect"):
        events_of(f"{fake_upstream.base_url}/redirect/v1", dataclasses.replace(WHOLE, stream=True))
    assert fake_upstream.hits["ok"] == before and fake_upstream.hits["redirect"] == 2


def test_a_stalled_upstream_times_out_at_the_whole_answer_deadline(
    fake_upstream: FakeUpstream,
) -> None:
    start = time.monotonic()
    events = events_of(f"{fake_upstream.base_url}/stall")  # whole_answer_s unset: the total, 5 s
    assert 4.9 < time.monotonic() - start < 8
    error = events[0].error.api_error() if events[0].error else None
    assert isinstance(error, UpstreamTimeout) and "whole answer" in error.message
    assert classify(error) is FailureClass.TIMEOUT


def test_the_whole_answer_deadline() -> None:
    timeouts = UpstreamTimeouts.model_validate(TIMEOUTS)
    assert timeouts.whole_answer_deadline_s == 5  # the total: never cut sooner than a stream
    sooner = UpstreamTimeouts.model_validate({**TIMEOUTS, "whole_answer_s": 2})
    assert sooner.whole_answer_deadline_s == 2
    capped = UpstreamTimeouts.model_validate({**TIMEOUTS, "whole_answer_s": 60})
    assert capped.whole_answer_deadline_s == 5  # never past the total


def test_connect_error_is_an_unavailable_event_without_the_url() -> None:
    port = free_port()  # nothing listens there
    events = events_of(f"http://127.0.0.1:{port}/v1")
    error = events[0].error.api_error() if events[0].error else None
    assert isinstance(error, UpstreamUnavailable) and str(port) not in error.message


def test_abort_cancels_the_waiting_request(fake_upstream: FakeUpstream) -> None:
    """A client that leaves (collect aborts the stream) cancels the call to the upstream."""

    async def main() -> float:
        up = provider(f"{fake_upstream.base_url}/stall", first_token_s=3)
        try:
            stream = await up.submit(WHOLE)

            async def read() -> list[GenerationEvent]:
                return [e async for e in stream]

            reader = asyncio.create_task(read())
            await asyncio.sleep(0.2)
            start = time.monotonic()
            stream.abort()
            with pytest.raises(asyncio.CancelledError):
                await reader
            return time.monotonic() - start
        finally:
            await up.aclose()

    assert asyncio.run(main()) < 0.5

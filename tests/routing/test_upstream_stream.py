"""An upstream's stream on loopback: first-token and idle timeouts, abort (fake upstream)."""

from __future__ import annotations

import asyncio
import time

import pytest

from mlx_manager.config import ProviderSettings
from mlx_manager.errors import UpstreamTimeout, UpstreamUnavailable
from mlx_manager.routing.providers.openai_compatible import OpenAICompatibleProvider
from mlx_manager.types import ChatMessage, GenerateRequest, GenerationEvent, SamplingParams
from tests.fixtures.fake_upstream import FakeUpstream
from tests.fixtures.server import free_port


def provider(base_url: str) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(
        ProviderSettings.model_validate(
            {
                "name": "p",
                "kind": "openai_compatible",
                "base_url": base_url,
                "timeouts": {"connect_s": 1, "first_token_s": 1, "idle_s": 0.5, "total_s": 5},
            }
        )
    )


REQUEST = GenerateRequest("r", "m", SamplingParams(), messages=(ChatMessage("user", "hi"),))


async def _events(base_url: str) -> list[GenerationEvent]:
    up = provider(base_url)
    try:
        return [e async for e in await up.submit(REQUEST)]
    finally:
        await up.aclose()


def test_first_token_timeout(fake_upstream: FakeUpstream) -> None:
    start = time.monotonic()
    events = asyncio.run(_events(f"{fake_upstream.base_url}/stall"))
    assert 0.9 < time.monotonic() - start < 4
    assert len(events) == 1 and events[0].error is not None
    error = events[0].error.api_error()
    assert isinstance(error, UpstreamTimeout) and "first token" in error.message


def test_idle_timeout_after_output_ends_with_an_error_event(fake_upstream: FakeUpstream) -> None:
    events = asyncio.run(_events(f"{fake_upstream.base_url}/slow"))
    assert events[0].text == "Hel"
    assert events[-1].error is not None and "next event" in events[-1].error.message


def test_connect_error_is_unavailable_without_the_url() -> None:
    port = free_port()  # nothing listens there

    async def main() -> None:
        up = provider(f"http://127.0.0.1:{port}/v1")
        try:
            with pytest.raises(UpstreamUnavailable) as info:
                await up.submit(REQUEST)
            assert str(port) not in info.value.message
        finally:
            await up.aclose()

    asyncio.run(main())


def test_abort_closes_the_stream(fake_upstream: FakeUpstream) -> None:
    async def main() -> list[GenerationEvent]:
        up = provider(f"{fake_upstream.base_url}/stall")
        try:
            stream = await up.submit(REQUEST)
            asyncio.get_running_loop().call_later(0.2, stream.abort)
            start = time.monotonic()
            events = [e async for e in stream]
            assert time.monotonic() - start < 0.9  # before the first-token timeout
            return events
        finally:
            await up.aclose()

    assert asyncio.run(main()) == []


def test_finished_streams_leave_their_connection_for_the_next_request(
    fake_upstream: FakeUpstream,
) -> None:
    """The body is read to its end after the last event: one connection serves them all."""

    async def run() -> list[str]:
        up = provider(f"{fake_upstream.base_url}/ok")
        texts = []
        try:
            for _ in range(5):
                events = [e async for e in await up.submit(REQUEST)]
                texts.append("".join(e.text for e in events))
                assert events[-1].finish_reason is not None and events[-1].error is None
        finally:
            await up.aclose()
        return texts

    fake_upstream.client_ports.clear()
    assert asyncio.run(run()) == ["Hi"] * 5
    assert len(fake_upstream.client_ports) == 5
    assert len(set(fake_upstream.client_ports)) == 1, fake_upstream.client_ports

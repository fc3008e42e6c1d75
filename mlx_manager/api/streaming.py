"""Bridging request streams to HTTP: SSE framing and disconnect-aware collection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from mlx_manager.engine.client import RequestStream
from mlx_manager.errors import ApiError, InternalError
from mlx_manager.types import GenerationEvent

PING_SECONDS = 15


class ClientDisconnected(Exception):
    """The caller went away before the answer was ready; its generation was aborted."""


def sse_response(chunks: AsyncIterator[dict[str, Any] | str]) -> EventSourceResponse:
    """OpenAI-style SSE: `data: <json>` per chunk (strings are sent as they are)."""

    async def frames() -> AsyncIterator[dict[str, str]]:
        async for chunk in chunks:
            data = chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False)
            yield {"data": data}

    return EventSourceResponse(frames(), ping=PING_SECONDS)


def anthropic_sse_response(events: AsyncIterator[dict[str, Any]]) -> EventSourceResponse:
    """Anthropic-style SSE: `event: <type>` + `data: <json>`, and `ping` events meanwhile."""

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for event in events:
            yield ServerSentEvent(json.dumps(event, ensure_ascii=False), event=event["type"])

    def ping() -> ServerSentEvent:
        return ServerSentEvent(json.dumps({"type": "ping"}), event="ping")

    return EventSourceResponse(frames(), ping=PING_SECONDS, ping_message_factory=ping)


async def collect(request: Request, stream: RequestStream) -> list[GenerationEvent]:
    """All events of a non-streamed request; aborts it if the client disconnects meanwhile."""
    events: list[GenerationEvent] = []

    async def gather() -> None:
        async for event in stream:
            events.append(event)

    task = asyncio.create_task(gather())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                task.result()
                return events
            if await request.is_disconnected():
                stream.abort()
                raise ClientDisconnected
    finally:
        if not task.done():
            task.cancel()


def raise_if_failed(event: GenerationEvent) -> None:
    if isinstance(event.error, ApiError):
        raise event.error
    if event.error is not None:
        raise InternalError(f"generation failed: {type(event.error).__name__}")

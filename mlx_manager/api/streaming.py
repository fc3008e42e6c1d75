"""One way every generation route answers: SSE when streamed, JSON when not, and an abort
when the client goes away before the answer is ready."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping

from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from mlx_manager.audit.record import watch
from mlx_manager.protocols.replies import Payload, Reply
from mlx_manager.routing.failover import RoutedStream
from mlx_manager.types import EventStream, GenerationEvent

PING_SECONDS = 15
# 499 (client closed request) for the log; nobody receives it.
CLIENT_CLOSED = 499


class ClientDisconnected(Exception):
    """The caller went away before the answer was ready; its generation was aborted."""


async def reply(
    request: Request,
    stream: EventStream,
    shape: Reply,
    streaming: bool | None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The HTTP answer to a submitted generation, shaped by its API's `Reply`; `headers` go
    on the answer, streamed or not (e.g. the fields the request set that were ignored), with
    the backend that answered (`x-mlx-manager-backend`) when the stream was routed."""
    if isinstance(stream, RoutedStream):
        headers = {**stream.headers, **(headers or {})}
    stream = watch(request.scope, stream, streaming)  # the audit log: first token, tokens
    if streaming:
        return sse_response(shape.stream(aiter(stream)), shape.named_events, headers)
    try:
        events = await collect(request, stream)
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)
    # JSONResponse directly: no jsonable_encoder pass over an already plain body.
    return JSONResponse(shape.body(events), headers=headers)


def sse_response(
    payloads: AsyncIterator[Payload],
    named_events: bool,
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    """OpenAI-style SSE (`data: <json>` per payload; strings sent as they are) or, with
    `named_events`, Anthropic-style (`event: <type>` + `data: <json>`, `ping` events)."""

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for payload in payloads:
            if isinstance(payload, str):
                yield ServerSentEvent(payload)
            elif named_events:
                yield ServerSentEvent(
                    json.dumps(payload, ensure_ascii=False), event=payload["type"]
                )
            else:
                yield ServerSentEvent(json.dumps(payload, ensure_ascii=False))

    if not named_events:
        return EventSourceResponse(frames(), ping=PING_SECONDS, headers=headers)

    def ping() -> ServerSentEvent:
        return ServerSentEvent(json.dumps({"type": "ping"}), event="ping")

    return EventSourceResponse(
        frames(), ping=PING_SECONDS, ping_message_factory=ping, headers=headers
    )


async def collect(request: Request, stream: EventStream) -> list[GenerationEvent]:
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

"""Anthropic Messages API routes: /v1/messages (streamed and not) and count_tokens.

Thin: parse, convert (protocols/anthropic_convert.py), submit to the same engine client as the
OpenAI routes, frame the reply. Any ``anthropic-beta`` header is accepted and ignored: the
betas change nothing this server does.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlx_manager.api.deps import engine_of, served_model
from mlx_manager.api.middleware import request_id_of
from mlx_manager.api.streaming import (
    ClientDisconnected,
    anthropic_sse_response,
    collect,
    raise_if_failed,
)
from mlx_manager.engine.client import RequestStream
from mlx_manager.errors import ApiError, InternalError
from mlx_manager.protocols import anthropic_convert as convert
from mlx_manager.protocols.anthropic_schemas import CountTokensRequest, MessagesRequest
from mlx_manager.protocols.anthropic_stream import MessageStreamEncoder

router = APIRouter()

_CLIENT_CLOSED = 499


@router.post("/v1/messages", response_model=None)
async def messages(body: MessagesRequest, request: Request) -> Response:
    internal = convert.messages_request_to_internal(body, request_id_of(request.scope))
    internal = dataclasses.replace(internal, model=served_model(request, body.model))
    stream = await engine_of(request).submit(internal)
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    if body.stream:
        return anthropic_sse_response(_events(stream, message_id, body.model))
    try:
        events = await collect(request, stream)
    except ClientDisconnected:
        return Response(status_code=_CLIENT_CLOSED)
    last = events[-1]
    raise_if_failed(last)
    if last.usage is None:
        raise InternalError("generation ended without usage")
    content = convert.content_blocks(
        "".join(e.text for e in events),
        "".join(e.reasoning for e in events),
        [c for e in events for c in e.tool_calls],
    )
    body_out = convert.message(
        message_id, body.model, content, last.finish_reason, last.stop_sequence, last.usage
    )
    return JSONResponse(body_out)


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, Any]:
    internal = convert.prompt_to_internal(body, request_id_of(request.scope))
    internal = dataclasses.replace(internal, model=served_model(request, body.model))
    return {"input_tokens": await engine_of(request).count_tokens(internal)}


async def _events(
    stream: RequestStream, message_id: str, model: str
) -> AsyncIterator[dict[str, Any]]:
    encoder = MessageStreamEncoder(message_id, model, len(stream.request.prompt_ids))
    for event in encoder.start():
        yield event
    yield {"type": "ping"}
    async for generated in stream:
        if generated.error is not None:
            error = generated.error
            if not isinstance(error, ApiError):
                error = InternalError(f"generation failed: {type(error).__name__}")
            for event in encoder.error(error):
                yield event
            return
        for event in encoder.feed(generated):
            yield event

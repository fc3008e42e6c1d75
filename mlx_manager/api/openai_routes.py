"""OpenAI-compatible routes: models, chat completions, legacy completions.

`/v1/models` answers in Anthropic's shape when the request carries `anthropic-version`.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlx_manager.api.deps import engine_of, served_model
from mlx_manager.api.dialect import is_anthropic
from mlx_manager.api.middleware import request_id_of
from mlx_manager.api.streaming import ClientDisconnected, collect, raise_if_failed, sse_response
from mlx_manager.engine.client import RequestStream
from mlx_manager.errors import InternalError, UnsupportedParameter
from mlx_manager.protocols import anthropic_convert as anthropic
from mlx_manager.protocols import openai_convert as convert
from mlx_manager.protocols.openai_schemas import ChatCompletionRequest, CompletionRequest
from mlx_manager.protocols.openai_stream import ChatStreamEncoder
from mlx_manager.types import FinishReason, GenerationEvent, ModelInfo, TokenLogprob, Usage

router = APIRouter()

# 499 (client closed request) for the log; nobody receives it.
_CLIENT_CLOSED = 499


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    infos = engine_of(request).model_infos()
    if is_anthropic(request.scope):
        return anthropic.model_list([anthropic.model_info(i.model_id, i.created) for i in infos])
    return {"object": "list", "data": [_card(i.model_id, i) for i in infos]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    model = engine_of(request).model_info(served_model(request, model_id))
    if is_anthropic(request.scope):
        return anthropic.model_info(model_id, model.created)
    return _card(model_id, model)


def _card(model_id: str, info: ModelInfo) -> dict[str, Any]:
    """The OpenAI card plus what the pool knows: type, size on disk, loaded, pinned."""
    return convert.model_card(
        model_id,
        info.created,
        info.context_length,
        type=info.model_type,
        size_bytes=info.size_bytes,
        loaded=info.loaded,
        pinned=info.pinned,
    )


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    internal = convert.chat_request_to_internal(body, request_id_of(request.scope))
    internal = dataclasses.replace(internal, model=served_model(request, body.model))
    stream = await engine_of(request).submit(internal)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _chat_chunks(stream, completion_id, body.model, created, include_usage)
        return sse_response(chunks)
    try:
        events = await collect(request, stream)
    except ClientDisconnected:
        return Response(status_code=_CLIENT_CLOSED)
    text, reason, usage, logprobs = _merge(events)
    return JSONResponse(
        convert.chat_completion(
            completion_id,
            body.model,
            created,
            text,
            reason,
            usage,
            logprobs if body.logprobs else None,
            reasoning="".join(e.reasoning for e in events),
            calls=[c for e in events for c in e.tool_calls],
        )
    )


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Response:
    internal = convert.completion_request_to_internal(body, request_id_of(request.scope))
    internal = dataclasses.replace(internal, model=served_model(request, body.model))
    if internal.echo and internal.prompt_text is None:
        raise UnsupportedParameter("echo is supported for text prompts only", param="echo")
    stream = await engine_of(request).submit(internal)
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    prefix = internal.prompt_text if internal.echo else ""
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _completion_chunks(
            stream, completion_id, body.model, created, include_usage, prefix or ""
        )
        return sse_response(chunks)
    try:
        events = await collect(request, stream)
    except ClientDisconnected:
        return Response(status_code=_CLIENT_CLOSED)
    text, reason, usage, logprobs = _merge(events)
    prefix = prefix or ""
    lp = convert.completion_logprobs(logprobs, len(prefix)) if body.logprobs is not None else None
    return JSONResponse(
        convert.text_completion(
            completion_id, body.model, created, prefix + text, reason, usage, lp
        )
    )


def _merge(
    events: list[GenerationEvent],
) -> tuple[str, FinishReason | None, Usage, list[TokenLogprob]]:
    last = events[-1]
    raise_if_failed(last)
    if last.usage is None:
        raise InternalError("generation ended without usage")
    logprobs = [lp for e in events for lp in e.logprobs]
    return "".join(e.text for e in events), last.finish_reason, last.usage, logprobs


def _error_chunk(event: GenerationEvent) -> dict[str, Any]:
    error = InternalError(f"generation failed: {type(event.error).__name__}")
    return error.openai_body()


async def _chat_chunks(
    stream: RequestStream, completion_id: str, model: str, created: int, include_usage: bool
) -> AsyncIterator[dict[str, Any] | str]:
    encoder = ChatStreamEncoder(
        completion_id, model, created, include_usage, stream.request.sampling.logprobs
    )
    for chunk in encoder.start():
        yield chunk
    async for event in stream:
        if event.error is not None:
            yield _error_chunk(event)
            break
        for chunk in encoder.feed(event):
            yield chunk
    yield "[DONE]"


async def _completion_chunks(
    stream: RequestStream,
    completion_id: str,
    model: str,
    created: int,
    include_usage: bool,
    prefix: str,
) -> AsyncIterator[dict[str, Any] | str]:
    want_logprobs = stream.request.sampling.logprobs
    offset = len(prefix)
    if prefix:
        yield convert.text_completion(
            completion_id, model, created, prefix, None, None, None, object_usage=include_usage
        )
    async for event in stream:
        if event.error is not None:
            yield _error_chunk(event)
            break
        logprobs = None
        if want_logprobs:
            logprobs = convert.completion_logprobs(list(event.logprobs), offset)
        offset += len(event.text)
        if event.text or event.finished:
            yield convert.text_completion(
                completion_id,
                model,
                created,
                event.text,
                event.finish_reason,
                None,
                logprobs,
                object_usage=include_usage,
            )
        if event.finished and include_usage and event.usage is not None:
            body = convert.text_completion(
                completion_id, model, created, "", None, event.usage, None
            )
            body["choices"] = []
            yield body
    yield "[DONE]"

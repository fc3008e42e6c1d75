"""Anthropic Messages API routes: /v1/messages (streamed and not) and count_tokens.

Thin: parse, convert (protocols/anthropic_convert.py), submit to the same generation service
as the OpenAI routes, answer through the one reply helper (with the fields the request set
that were ignored in a header). Any ``anthropic-beta`` header is accepted and ignored: the
betas change nothing this server does.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mlx_manager.api.deps import generation_of, principal_of
from mlx_manager.api.middleware import request_id_of
from mlx_manager.api.streaming import reply
from mlx_manager.protocols import anthropic_convert as convert
from mlx_manager.protocols.anthropic_reply import MessageReply
from mlx_manager.protocols.anthropic_schemas import CountTokensRequest, MessagesRequest
from mlx_manager.protocols.field_policy import ignored_header

router = APIRouter()


@router.post("/v1/messages", response_model=None)
async def messages(body: MessagesRequest, request: Request) -> Response:
    internal = convert.messages_request_to_internal(body, request_id_of(request.scope))
    stream = await generation_of(request).submit(internal, principal_of(request))
    shape = MessageReply(body, stream.prompt_tokens)
    headers = ignored_header(body.ignored_fields())
    return await reply(request, stream, shape, body.stream, headers)


@router.post("/v1/messages/count_tokens", response_model=None)
async def count_tokens(body: CountTokensRequest, request: Request) -> JSONResponse:
    internal = convert.prompt_to_internal(body, request_id_of(request.scope))
    tokens = await generation_of(request).count_tokens(internal, principal_of(request))
    return JSONResponse({"input_tokens": tokens}, headers=ignored_header(body.ignored_fields()))

"""OpenAI-compatible routes: models, chat completions, legacy completions.

`/v1/models` answers in Anthropic's shape when the request carries `anthropic-version`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from mlx_manager.api.deps import generation_of, principal_of, runtime_of
from mlx_manager.api.dialect import is_anthropic
from mlx_manager.api.middleware import request_id_of
from mlx_manager.api.streaming import reply
from mlx_manager.protocols import model_cards
from mlx_manager.protocols import openai_convert as convert
from mlx_manager.protocols.field_policy import ignored_header
from mlx_manager.protocols.openai_reply import ChatReply, CompletionReply
from mlx_manager.protocols.openai_schemas import ChatCompletionRequest, CompletionRequest

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    return model_cards.model_list(
        runtime.model_infos(),
        anthropic=is_anthropic(request.scope),
        aliases=runtime.aliases.aliases,
    )


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    info = runtime_of(request).model_info(model_id)
    return model_cards.model_card(model_id, info, anthropic=is_anthropic(request.scope))


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    internal = convert.chat_request_to_internal(body, request_id_of(request.scope))
    stream = await generation_of(request).submit(internal, principal_of(request))
    headers = ignored_header(body.ignored_fields())
    return await reply(request, stream, ChatReply(body), body.stream, headers)


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Response:
    internal = convert.completion_request_to_internal(body, request_id_of(request.scope))
    stream = await generation_of(request).submit(internal, principal_of(request))
    echoed = (internal.prompt_text or "") if internal.echo else ""
    headers = ignored_header(body.ignored_fields())
    return await reply(request, stream, CompletionReply(body, echoed), body.stream, headers)

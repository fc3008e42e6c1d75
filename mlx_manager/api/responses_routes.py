"""OpenAI Responses API route: /v1/responses (streamed and not), served statelessly.

Thin: parse, convert (protocols/responses_convert.py), submit to the same generation service
as chat, answer through the one reply helper. The conversation a response ends is kept in the
runtime's bounded store (unless ``store: false``) for ``previous_response_id``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from mlx_manager.api.deps import generation_of, principal_of, runtime_of
from mlx_manager.api.middleware import request_id_of
from mlx_manager.api.streaming import reply
from mlx_manager.protocols import responses_convert as convert
from mlx_manager.protocols.responses_output import response_shell
from mlx_manager.protocols.responses_reply import ResponsesReply
from mlx_manager.protocols.responses_schemas import ResponsesRequest
from mlx_manager.types import ChatMessage

router = APIRouter()


@router.post("/v1/responses", response_model=None)
async def create_response(body: ResponsesRequest, request: Request) -> Response:
    store = runtime_of(request).responses
    earlier = store.get(body.previous_response_id) if body.previous_response_id else ()
    conversation = (*earlier, *convert.input_messages(body))
    internal = convert.responses_request_to_internal(
        body, request_id_of(request.scope), conversation
    )
    stream = await generation_of(request).submit(internal, principal_of(request))
    shell = response_shell(body)

    def keep(turn: ChatMessage) -> None:
        if body.store is not False:
            store.put(shell.response_id, (*conversation, turn))

    return await reply(request, stream, ResponsesReply(shell, keep), body.stream)

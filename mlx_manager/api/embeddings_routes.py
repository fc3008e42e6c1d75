"""OpenAI `POST /v1/embeddings`: parse, call the embeddings service, frame the reply."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlx_manager.api.deps import runtime_of
from mlx_manager.audit.record import note_local
from mlx_manager.protocols.openai_embeddings import (
    EmbeddingRequest,
    embedding_response,
    inputs_of,
)

router = APIRouter()


@router.post("/v1/embeddings", response_model=None)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> JSONResponse:
    note_local(request.scope, body.model)  # the audit log
    result = await runtime_of(request).embeddings.embed(
        body.model, inputs_of(body), dimensions=body.dimensions, truncate=body.truncate
    )
    note_local(request.scope, body.model, result.prompt_tokens)
    # JSONResponse directly: 2,048 x 1,024 floats through jsonable_encoder would cost seconds.
    return JSONResponse(
        embedding_response(body.model, result.vectors, result.prompt_tokens, body.encoding_format)
    )

"""The root, health and engine statistics.

`GET /` and `HEAD /` answer a small JSON (name, version, where to go next): clients probe the
root before their first request (Claude Code sends `HEAD /`). Like `/health` it stays open when
`--api-key` is set: a probe may come without the key, and the answer tells nothing a caller
could not learn from `/health` (no model names).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlx_manager.api.deps import runtime_of
from mlx_manager.frontend.lifecycle import EngineState

public_router = APIRouter()  # no credentials: probes
router = APIRouter()


@public_router.api_route("/", methods=["GET", "HEAD"])
async def root(request: Request) -> dict[str, Any]:
    return {
        "name": request.app.title,
        "version": request.app.version,
        "links": {"models": "/v1/models", "health": "/health"},
    }


@public_router.get("/health")
async def health(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    body: dict[str, Any] = {
        "status": runtime.state.value,
        "models": [info.model_id for info in runtime.model_infos() if info.loaded],
    }
    if runtime.load_error:
        body["error"] = runtime.load_error
    if runtime.failed_models:  # start-up models not served; the others are
        body["failed_models"] = runtime.failed_models
    status = 200 if runtime.state is EngineState.READY else 503
    return JSONResponse(
        body, status_code=status, headers={} if status == 200 else {"Retry-After": "2"}
    )


@router.get("/v1/queue/stats")
async def queue_stats(request: Request) -> dict[str, Any]:
    return dataclasses.asdict(runtime_of(request).snapshot())

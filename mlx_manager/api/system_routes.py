"""Health and engine statistics."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mlx_manager.api.deps import runtime_of
from mlx_manager.frontend.lifecycle import EngineState

router = APIRouter()


@router.get("/health")
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

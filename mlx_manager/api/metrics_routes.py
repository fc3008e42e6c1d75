"""`GET /metrics`: Prometheus' text format (authenticated unless --metrics-public)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from mlx_manager.api.deps import runtime_of

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(runtime_of(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

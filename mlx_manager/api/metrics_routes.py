"""`GET /metrics`: Prometheus' text format (authenticated unless --metrics-public)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from mlx_manager.api.deps import runtime_of
from mlx_manager.errors import NotFound

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    if not runtime.metrics_enabled:
        raise NotFound("metrics are off on this server (--no-metrics)", code="metrics_off")
    return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

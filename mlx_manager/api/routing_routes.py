"""Routing administration: `GET /admin/routes/explain?model=NAME` says which rule a requested
model name matches (exact, longest prefix, regex by priority, alias; null: the local pool)
and the chain of targets it runs, with each target's cooldown."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from mlx_manager.api.deps import generation_of

router = APIRouter(prefix="/admin/routes")


@router.get("/explain")
async def explain(
    request: Request, model: str = Query(min_length=1, max_length=512)
) -> dict[str, Any]:
    return generation_of(request).explain(model)

"""Model pool administration: status, preload (and pin), unload.

- `GET /admin/models/status`: limits, memory (booked per model and MLX's own counters), and
  each resident model's state, bytes, last use and requests in flight.
- `POST /admin/models/load/{model_id}`: load if needed and pin (never evicted, never
  idle-unloaded). Ids may contain `/`.
- `POST /admin/models/unload/{model_id}`: unload now, pinned or not. 404 when the model is not
  loaded; 409 (with Retry-After) while it has requests in flight: it refuses, never drains.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends, Request

from mlx_manager.api.auth import Admin, require_admin
from mlx_manager.api.deps import runtime_of

router = APIRouter(prefix="/admin/models", dependencies=[Depends(require_admin)])


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    body = dataclasses.asdict(runtime.pool.status())
    body["mlx_memory"] = dataclasses.asdict(await runtime.memory())
    body["engine_state"] = runtime.state.value
    return body


@router.post("/load/{model_id:path}")
async def load(model_id: str, request: Request, admin: Admin) -> dict[str, Any]:
    runtime = runtime_of(request)
    runtime.lifecycle.check_started()
    loaded = await runtime.pool.load(model_id, pin=True)
    await runtime.accounts.record(admin, "model.load", model_id)
    return {"status": "loaded", "model": dataclasses.asdict(loaded)}


@router.post("/unload/{model_id:path}")
async def unload(model_id: str, request: Request, admin: Admin) -> dict[str, Any]:
    runtime = runtime_of(request)
    runtime.lifecycle.check_started()
    await runtime.pool.unload(model_id)
    await runtime.accounts.record(admin, "model.unload", model_id)
    return {"status": "unloaded", "model": model_id}

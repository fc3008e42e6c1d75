"""Model pool administration: the catalog with badges, status, load, pin, unpin, unload.

- `GET /admin/models`: every servable model with its badges (type, tools, thinking,
  quantization, parameters, size, context length), its memory fit and its residency
  (admin/model_catalog.py says how each is derived); startup models that could not be
  resolved are listed apart under `unavailable`.
- `GET /admin/models/status`: limits, memory (booked per model and MLX's own counters), and
  each resident model's state, bytes, last use and requests in flight.
- `POST /admin/models/load/{model_id}?pin=true`: load if needed and pin (never evicted, never
  idle-unloaded); `pin=false` loads without pinning. A loaded model is not reloaded. Ids may
  contain `/`.
- `POST /admin/models/pin/{model_id}`, `POST /admin/models/unpin/{model_id}`: change a loaded
  model's pin without reloading it; 404 when it is not loaded. An unpinned model is evicted at
  once if the pool is over its limits and it is the least recently used idle one.
- `POST /admin/models/unload/{model_id}`: unload now, pinned or not. 404 when the model is not
  loaded; 409 (with Retry-After) while it has requests in flight: it refuses, never drains.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from mlx_manager.admin.model_catalog import budget_view, catalog_rows
from mlx_manager.api.auth import Admin, require_admin
from mlx_manager.api.deps import runtime_of

router = APIRouter(prefix="/admin/models", dependencies=[Depends(require_admin)])


@router.get("")
async def catalog(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    rows = await catalog_rows(
        runtime.pool, runtime.badges, runtime.aliases.aliases, runtime.failed_models
    )
    listed = {row["id"] for row in rows}
    unavailable = [
        {"id": model_id, "reason": reason}
        for model_id, reason in runtime.failed_models.items()
        if model_id not in listed
    ]
    return {
        "object": "list",
        "data": rows,
        "unavailable": unavailable,
        "budget": budget_view(runtime.pool),
        "engine_state": runtime.state.value,
    }


@router.get("/status")
async def status(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    body = dataclasses.asdict(runtime.pool.status())
    body["mlx_memory"] = dataclasses.asdict(await runtime.memory())
    body["engine_state"] = runtime.state.value
    return body


@router.post("/load/{model_id:path}")
async def load(
    model_id: str, request: Request, admin: Admin, pin: bool = Query(True)
) -> dict[str, Any]:
    runtime = runtime_of(request)
    runtime.lifecycle.check_started()
    loaded = await runtime.pool.load(model_id, pin=pin)
    await runtime.accounts.record(admin, "model.load", model_id)
    return {"status": "loaded", "model": dataclasses.asdict(loaded)}


@router.post("/pin/{model_id:path}")
async def pin(model_id: str, request: Request, admin: Admin) -> dict[str, Any]:
    return await _set_pin(model_id, request, admin, pinned=True)


@router.post("/unpin/{model_id:path}")
async def unpin(model_id: str, request: Request, admin: Admin) -> dict[str, Any]:
    return await _set_pin(model_id, request, admin, pinned=False)


async def _set_pin(model_id: str, request: Request, admin: Admin, pinned: bool) -> dict[str, Any]:
    runtime = runtime_of(request)
    runtime.lifecycle.check_started()
    changed = runtime.pool.pin(model_id, pinned)
    await runtime.accounts.record(admin, "model.pin" if pinned else "model.unpin", model_id)
    return {"status": "pinned" if pinned else "unpinned", "model": dataclasses.asdict(changed)}


@router.post("/unload/{model_id:path}")
async def unload(model_id: str, request: Request, admin: Admin) -> dict[str, Any]:
    runtime = runtime_of(request)
    runtime.lifecycle.check_started()
    await runtime.pool.unload(model_id)
    await runtime.accounts.record(admin, "model.unload", model_id)
    return {"status": "unloaded", "model": model_id}

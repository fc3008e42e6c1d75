"""Routing administration, applied live.

- `GET /admin/routes`: every rule (config file first, then the stored ones by id) and the
  configuration's revision; `POST /admin/routes` adds one (`{pattern, match, priority,
  enabled, targets: [{provider, model}]}`), `GET/PUT/DELETE /admin/routes/{id}`.
- `GET /admin/routes/explain?model=NAME`: which rule a requested model name matches (exact,
  longest prefix, regex by priority, alias; null: the local pool) and the chain of targets
  it runs, with each target's cooldown.

A write is checked whole (known providers, each rule once, RE2 regexes) before it is stored;
requests in flight keep the rules they started with.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from mlx_manager.api.auth import Admin, require_admin
from mlx_manager.api.deps import generation_of, runtime_of
from mlx_manager.config import RouteSettings
from mlx_manager.routing.live import LiveRouting

router = APIRouter(prefix="/admin/routes", dependencies=[Depends(require_admin)])


def _live(request: Request) -> LiveRouting:
    return runtime_of(request).routing


def _view(source: str, route_id: int | None, settings: RouteSettings) -> dict[str, Any]:
    return {"id": route_id, "source": source, **settings.model_dump(mode="json")}


@router.get("/explain")
async def explain(
    request: Request, model: str = Query(min_length=1, max_length=512)
) -> dict[str, Any]:
    return generation_of(request).explain(model)


@router.get("")
async def list_routes(request: Request) -> dict[str, Any]:
    live = _live(request)
    data = [_view(*entry) for entry in live.routes()]
    return {"object": "list", "data": data, "revision": live.revision}


@router.post("", status_code=201)
async def create_route(body: RouteSettings, request: Request, principal: Admin) -> dict[str, Any]:
    stored = await _live(request).add_route(body, principal.subject)
    return _view("database", stored.id, stored.settings)


@router.get("/{route_id}")
async def get_route(route_id: int, request: Request) -> dict[str, Any]:
    stored = _live(request).stored_route(route_id)
    return _view("database", stored.id, stored.settings)


@router.put("/{route_id}")
async def replace_route(
    route_id: int,
    body: RouteSettings,
    request: Request,
    principal: Admin,
) -> dict[str, Any]:
    await _live(request).replace_route(route_id, body, principal.subject)
    return _view("database", route_id, body)


@router.delete("/{route_id}", status_code=204)
async def delete_route(route_id: int, request: Request, principal: Admin) -> Response:
    await _live(request).delete_route(route_id, principal.subject)
    return Response(status_code=204)

"""The pool's limits, changed live (admin/pool_limits.py has the rules).

- `GET /admin/pool/limits`: the flags, the live override (who, when) and the effective limits
  (the memory budget in bytes), and what keeps the pool over them, if anything.
- `PUT /admin/pool/limits`: `{max_models, max_memory_gb, memory_limit_pct, keep_alive_s}`;
  a field left out keeps its value, `null` removes that limit. Applied at once (idle models
  evicted to fit: listed in `evicted`), kept across restarts, recorded in the admin changes.
  A value out of bounds is a 400 naming it.
- `DELETE /admin/pool/limits`: drop the override; the flags apply again.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError

from mlx_manager.admin.pool_limits import PoolLimits
from mlx_manager.api.auth import Admin, require_admin
from mlx_manager.api.deps import runtime_of
from mlx_manager.errors import InvalidRequest

router = APIRouter(prefix="/admin/pool", dependencies=[Depends(require_admin)])


class PoolLimitsBody(BaseModel):
    """Types only: the bounds are PoolConfig's (the flags'), checked by PoolLimits."""

    model_config = ConfigDict(extra="forbid")

    max_models: int | None = None
    max_memory_gb: float | None = None
    memory_limit_pct: float | None = None
    keep_alive_s: float | None = None


def _limits(request: Request) -> PoolLimits:
    return runtime_of(request).pool_limits


@router.get("/limits")
async def get_limits(request: Request) -> dict[str, Any]:
    return _limits(request).view()


@router.put("/limits")
async def put_limits(body: PoolLimitsBody, request: Request, admin: Admin) -> dict[str, Any]:
    values = body.model_dump(exclude_unset=True)
    if not values:
        raise InvalidRequest(
            "Send at least one of max_models, max_memory_gb, memory_limit_pct, keep_alive_s.",
            code="missing_required_parameter",
        )
    try:
        view, evicted = await _limits(request).update(values, admin.subject)
    except ValidationError as exc:  # PoolConfig's bounds: a 400 naming the field
        raise RequestValidationError(exc.errors()) from None
    return {**view, "evicted": evicted}


@router.delete("/limits")
async def reset_limits(request: Request, admin: Admin) -> dict[str, Any]:
    view, evicted = await _limits(request).reset(admin.subject)
    return {**view, "evicted": evicted}

"""Admin-only routes: a dependency on the router, so a new admin route cannot skip it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from mlx_manager.api.deps import principal_of
from mlx_manager.errors import PermissionDenied
from mlx_manager.security.principal import Principal


def require_admin(request: Request) -> Principal:
    principal = principal_of(request)
    if not principal.is_admin:
        raise PermissionDenied("this route is for administrators")
    return principal


# A route parameter that is the calling admin (the router's dependency already checked it).
Admin = Annotated[Principal, Depends(require_admin)]

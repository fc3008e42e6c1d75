"""What routes take from the app: the runtime's parts and the caller's principal."""

from __future__ import annotations

from fastapi import Request

from mlx_manager.errors import AuthenticationFailed
from mlx_manager.routing.service import GenerationService
from mlx_manager.runtime import Runtime
from mlx_manager.security.principal import Principal


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def generation_of(request: Request) -> GenerationService:
    return runtime_of(request).generation


def principal_of(request: Request) -> Principal:
    """The caller, as the router's `require_principal` already admitted it (its checks are
    not run twice); a request that reached a route with none is refused, never anonymous."""
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise AuthenticationFailed("not authenticated")
    return principal

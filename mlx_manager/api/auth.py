"""Authentication and its enforcement.

- `AuthMiddleware` (ASGI, before the body is read) turns the request's credential into a
  `Principal` through the account service, or records why it could not. It decides nothing.
- `require_principal`, a dependency on every router but the public one (api/app.py), is the
  check: no principal, no answer (401/403 in the caller's dialect). A route is protected by
  the router it is on, never by matching its path, and a failed check never falls back to an
  anonymous principal. tests/api/test_route_protection.py walks the route table to keep it so.
- Cookie sessions (the web UI) must echo the CSRF cookie in `x-csrf-token` on every write.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mlx_manager.accounts.service import AccountService
from mlx_manager.errors import ApiError, AuthenticationFailed, PermissionDenied
from mlx_manager.security.credentials import (
    CSRF_COOKIE,
    CSRF_HEADER,
    ConflictingCredentials,
    cookie,
    presented_credential,
)
from mlx_manager.security.principal import Principal, Role

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def is_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


class AuthMiddleware:
    def __init__(self, app: ASGIApp, accounts: Callable[[], AccountService]) -> None:
        self.app = app
        self._accounts = accounts  # the runtime's, made by the lifespan before any request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = scope.setdefault("state", {})
            try:
                credential = presented_credential(_headers(scope))
                state["principal"] = await self._accounts().authenticate(
                    credential, is_loopback(scope)
                )
            except ConflictingCredentials as exc:
                state["auth_error"] = AuthenticationFailed(str(exc))
            except ApiError as exc:
                state["auth_error"] = exc
        await self.app(scope, receive, send)


async def require_principal(request: Request) -> Principal:
    # async: a plain def would be run on a worker thread, a thread hop on every request
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:
        error = request.scope.get("state", {}).get("auth_error")
        raise error if isinstance(error, ApiError) else AuthenticationFailed("not authenticated")
    if principal.role is Role.PENDING and request.url.path not in PENDING_ALLOWED:
        raise PermissionDenied("this account is waiting for an administrator's approval")
    if principal.via == "session" and request.method not in SAFE_METHODS:
        _check_csrf(request)
    return principal


# What an account awaiting approval may still do: see itself, sign out.
PENDING_ALLOWED = frozenset({"/auth/me", "/auth/logout"})


def _check_csrf(request: Request) -> None:
    headers = {k.lower(): v for k, v in request.headers.items()}
    expected = cookie(headers, CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise PermissionDenied(f"a signed-in write needs the {CSRF_HEADER} header (CSRF)")


async def require_admin(
    principal: Annotated[Principal, Depends(require_principal)],
) -> Principal:
    if not principal.is_admin:
        raise PermissionDenied("this route is for administrators")
    return principal


Authenticated = Annotated[Principal, Depends(require_principal)]
Admin = Annotated[Principal, Depends(require_admin)]

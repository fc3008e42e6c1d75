"""API-key check for every route but a few open ones (when a key is configured).

Deny by default: `/v1/*`, `/admin/*` (model loads and unloads), `/metrics`, `/docs` and any
route added later need the key; only the root probe, `/health` and, with --metrics-public,
`/metrics` are open. (Accounts and per-user keys replace this static key later.)

OpenAI clients send ``Authorization: Bearer KEY``; Anthropic clients send ``x-api-key: KEY``
(or a bearer token, as Claude Code does with ANTHROPIC_AUTH_TOKEN). A missing or wrong key is
a 401 in the caller's dialect. With no key configured, nothing is checked.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from mlx_manager.api.dialect import is_anthropic
from mlx_manager.api.middleware import send_error
from mlx_manager.errors import AuthenticationFailed
from mlx_manager.security.principal import STATIC_KEY


def presented_keys(scope: Scope) -> list[str]:
    """The keys a request presents, in the headers its dialect allows."""
    headers = {name.lower(): value.decode("latin-1") for name, value in scope["headers"]}
    keys = []
    authorization = headers.get(b"authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    if is_anthropic(scope) and headers.get(b"x-api-key"):
        keys.append(headers[b"x-api-key"])
    return keys


OPEN_PATHS = frozenset({"/", "/health"})


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self._key = api_key.encode()
        self._open = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")) in self._open:
            await self.app(scope, receive, send)
            return
        keys = presented_keys(scope)
        if any(hmac.compare_digest(key.encode(), self._key) for key in keys):
            scope.setdefault("state", {})["principal"] = STATIC_KEY
            await self.app(scope, receive, send)
            return
        what = "missing" if not keys else "invalid"
        hint = (
            "x-api-key or Authorization: Bearer" if is_anthropic(scope) else "Authorization: Bearer"
        )
        error = AuthenticationFailed(f"API key {what}: send it as {hint}.")
        await send_error(scope, send, error)

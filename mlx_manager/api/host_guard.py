"""Host and Origin checks on every request: a DNS-rebinding page (Ollama CVE-2024-28224)
reaches the server under a name of the attacker's, and a cross-site page sends its own Origin;
both get a 403 before anything else runs.

Allowed: the loopback names, the address the server listens on (unless a wildcard), and
`--allowed-hosts` (`*` allows any Host, for a server behind a proxy that checks it). An Origin,
when sent, must name an allowed host too (the string "null", of sandboxed pages and files, is
refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from mlx_manager.api.middleware import send_error
from mlx_manager.errors import PermissionDenied

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})


def allowed_host_names(bind_host: str, extra: Iterable[str]) -> frozenset[str] | None:
    """The names a request may use; None: any (`*` given)."""
    names = set(LOOPBACK_NAMES)
    if bind_host not in WILDCARD_BINDS:
        names.add(bind_host.strip("[]").lower())
    for entry in extra:
        if entry.strip() == "*":
            return None
        names.add(entry.strip().strip("[]").lower())
    return frozenset(names)


def _hostname(authority: str) -> str:
    """`Host` header -> name (port and IPv6 brackets dropped)."""
    if authority.startswith("["):
        return authority[1:].partition("]")[0].lower()
    return authority.rpartition(":")[0].lower() if authority.count(":") == 1 else authority.lower()


class HostGuardMiddleware:
    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app = app
        self._allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._allowed is None:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = _hostname(headers.get(b"host", ""))
        if host not in self._allowed:
            error = PermissionDenied(
                f"Host {host[:64]!r} is not allowed: add it with --allowed-hosts",
                code="host_not_allowed",
            )
            await send_error(scope, send, error)
            return
        origin = headers.get(b"origin")
        if origin is not None and _origin_host(origin) not in self._allowed:
            error = PermissionDenied(
                "cross-origin request refused: add the page's host with --allowed-hosts",
                code="origin_not_allowed",
            )
            await send_error(scope, send, error)
            return
        await self.app(scope, receive, send)


def _origin_host(origin: str) -> str:
    parts = urlsplit(origin.strip())
    return (parts.hostname or "").lower() if parts.scheme in ("http", "https") else ""

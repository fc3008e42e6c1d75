"""The one credential parser: every header form a client may use, read in one place (Open
WebUI's second key header that bypassed restrictions is the cautionary tale).

- `Authorization: Bearer X` (OpenAI SDKs, Claude Code's ANTHROPIC_AUTH_TOKEN),
- `x-api-key: X` (Anthropic SDKs),
- the session cookie (the web UI).
Two different bearer values are a conflict and refused, never one picked silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Literal

SESSION_COOKIE = "mlxm_session"
CSRF_COOKIE = "mlxm_csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class Credential:
    kind: Literal["bearer", "session"]
    value: str


class ConflictingCredentials(ValueError):
    pass


def presented_credential(headers: Mapping[str, str]) -> Credential | None:
    """The request's credential; a key header wins over the session cookie (a program
    calling from a browser tab of the UI is the program). `headers`: lower-case names."""
    keys: set[str] = set()
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.add(token.strip())
    if headers.get("x-api-key", "").strip():
        keys.add(headers["x-api-key"].strip())
    if len(keys) > 1:
        raise ConflictingCredentials("two different keys were sent (Authorization, x-api-key)")
    if keys:
        return Credential("bearer", keys.pop())
    session = cookie(headers, SESSION_COOKIE)
    return Credential("session", session) if session else None


def cookie(headers: Mapping[str, str], name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    try:
        jar = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None

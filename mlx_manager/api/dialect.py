"""Which API dialect a request speaks: Anthropic (/v1/messages, or an anthropic-version header)
or OpenAI (everything else). Errors and auth answer in the caller's dialect."""

from __future__ import annotations

from starlette.types import Scope


def is_anthropic(scope: Scope) -> bool:
    if str(scope.get("path", "")).startswith("/v1/messages"):
        return True
    return any(name == b"anthropic-version" for name, _ in scope.get("headers", []))

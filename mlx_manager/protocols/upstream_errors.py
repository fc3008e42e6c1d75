"""An upstream's error, in either vendor's shape, as one of our ApiErrors (pure, no I/O).

OpenAI answers ``{"error": {"message", "type", "code"}}``, Anthropic
``{"type": "error", "error": {"type", "message"}}``; both may also arrive inside a stream. The
status picks our class (so the caller gets it in its own dialect and failover can classify
it); the upstream's message is kept, prefixed with the provider's name, with anything that
looks like its URL or key cut out, and Retry-After is passed on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlx_manager.errors import (
    ApiError,
    AuthenticationFailed,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    shorten,
)

_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: ModelNotFound,
    413: RequestTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    503: Overloaded,
    529: Overloaded,
}
# Error types sent inside a stream (no HTTP status there) -> the status they stand for.
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "overloaded_error": 529,
    "api_error": 500,
    "server_error": 500,
}
MAX_MESSAGE_CHARS = 500


def error_fields(body: Any) -> tuple[str | None, str | None]:
    """(type, message) from either vendor's error body (a dict, JSON text or anything)."""
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return None, body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            kind, message = inner.get("type"), inner.get("message")
            return (
                kind if isinstance(kind, str) else None,
                message if isinstance(message, str) else None,
            )
        if isinstance(inner, str):
            return None, inner
    return None, None


def status_of_type(kind: str | None) -> int:
    return _TYPE_STATUS.get(kind or "", 500)


def upstream_error(
    provider: str,
    status: int,
    body: Any,
    *,
    retry_after: str | None = None,
    secrets: tuple[str, ...] = (),
) -> ApiError:
    """The ApiError for an upstream's HTTP error `status` with its `body`."""
    _, message = error_fields(body)
    text = scrub(message or f"HTTP {status}", secrets)
    full = f"upstream {provider!r} answered {status}: {text}"
    error_class = _BY_STATUS.get(status)
    if error_class is None:
        error_class = InvalidRequest if 400 <= status < 500 else InternalError
    headers = {"Retry-After": retry_after} if retry_after and retry_after.isdigit() else {}
    if issubclass(error_class, Overloaded):
        seconds = int(retry_after) if retry_after and retry_after.isdigit() else 1
        return error_class(full, retry_after_s=seconds, code="upstream_overloaded")
    code = "upstream_error" if error_class is InternalError else None
    return error_class(full, code=code, headers=headers)


def scrub(message: str, secrets: tuple[str, ...]) -> str:
    """`message` cut to size with each secret (the key, the base URL) replaced."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "…")
    return shorten(message, MAX_MESSAGE_CHARS)

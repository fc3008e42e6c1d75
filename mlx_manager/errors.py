"""One closed error taxonomy. Each error knows its HTTP status and its shape in both dialects.

Everything a route raises on purpose is an `ApiError`; anything else is a bug and is answered
as a 500 `InternalError` without a stack trace (the trace goes to the log).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

# An absolute POSIX or Windows path (not the path part of a URL), up to its last component.
_ABSOLUTE_PATH = re.compile(
    r"(?<![\w.:/\\])(?:/|[A-Za-z]:\\)(?:[^\s/\\'\"(),;:]+[/\\])+([^\s/\\'\"(),;:]*)"
)


def without_paths(message: str) -> str:
    """`message` with each absolute path cut to its last component: a message meant for a
    client must not show the server's directory layout (the log keeps the full one)."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "…", message)


def shorten(text: str, limit: int = 256) -> str:
    """Client input as echoed in a message: at most `limit` characters (an ellipsis marks a
    cut), so a huge name does not come back whole in the error."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


class ApiError(Exception):
    status: ClassVar[int] = 500
    anthropic_status_override: ClassVar[int | None] = None  # where Anthropic's status differs
    openai_type: ClassVar[str] = "server_error"
    anthropic_type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        anthropic_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers or {}
        self.anthropic_message = anthropic_message or message

    @property
    def anthropic_status(self) -> int:
        return self.anthropic_status_override or self.status

    def openai_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def anthropic_body(self) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": self.anthropic_type, "message": self.anthropic_message},
        }


class InvalidRequest(ApiError):
    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    # OpenAI's code for a parameter whose value is wrong, the commonest 400; raisers name a
    # more precise one (missing_required_parameter, invalid_type, ...) where there is one.
    default_code = "invalid_value"


class UnsupportedParameter(InvalidRequest):
    default_code = "unsupported_parameter"


class ContextLengthExceeded(InvalidRequest):
    default_code = "context_length_exceeded"


class AuthenticationFailed(ApiError):
    status = 401
    openai_type = "invalid_request_error"
    anthropic_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDenied(ApiError):
    status = 403
    openai_type = "invalid_request_error"
    anthropic_type = "permission_error"
    default_code = "permission_denied"


class NotFound(ApiError):
    status = 404
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"
    default_code = "not_found"


class Conflict(ApiError):
    """The write clashes with what is stored (a name taken, a provider still in use)."""

    status = 409
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_code = "conflict"


class ModelNotFound(NotFound):
    default_code = "model_not_found"


class RequestTooLarge(ApiError):
    status = 413
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"
    default_code = "request_too_large"


class RateLimited(ApiError):
    """Too many requests for a rate limit (an upstream's, passed on with its Retry-After)."""

    status = 429
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class Overloaded(ApiError):
    """The server cannot take the request now; the client should retry later."""

    status = 503
    anthropic_status_override = 529
    openai_type = "server_error"
    anthropic_type = "overloaded_error"
    default_code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1, **kwargs: Any) -> None:
        headers = {"Retry-After": str(retry_after_s), **kwargs.pop("headers", {})}
        super().__init__(message, headers=headers, **kwargs)


class ModelLoading(Overloaded):
    default_code = "model_loading"


class ServerShuttingDown(Overloaded):
    """The server is draining before it stops: retry (on another instance, or after it)."""

    default_code = "server_shutting_down"


class EngineUnavailable(Overloaded):
    """The engine cannot serve until the server is restarted (a distributed group lost a
    rank): every model-facing call is refused, /health is 503."""

    default_code = "engine_unavailable"


class GroupLost(EngineUnavailable):
    """A rank of the distributed group that shards the model is gone."""

    default_code = "distributed_group_lost"


class ModelLoadFailed(ApiError):
    status = 500
    default_code = "model_load_failed"


class PoolFull(Overloaded):
    """No resident model can be evicted to make room for the requested one (all busy/pinned)."""

    default_code = "model_pool_full"


class ModelBusy(ApiError):
    """The model has requests in flight, so it cannot be unloaded now."""

    status = 409
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_code = "model_busy"


class ModelNotSupported(ApiError):
    """The model's type or architecture has no loader here (yet)."""

    status = 501
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_code = "model_not_supported"


class UpstreamUnavailable(ApiError):
    """An upstream could not be reached, or broke the connection or its protocol."""

    status = 502
    default_code = "upstream_unavailable"


class BackendTimeout(ApiError):
    """A backend (an upstream or the local engine) took longer than one of its timeouts:
    failover treats every kind alike."""

    status = 504
    default_code = "timeout"


class UpstreamTimeout(BackendTimeout):
    """An upstream took longer than its timeout (first token, idle gap or total)."""

    default_code = "upstream_timeout"


class LocalTimeout(BackendTimeout):
    """The local engine took longer than a `local_timeouts` limit (first token, idle gap or
    total); the generation was aborted."""

    default_code = "local_timeout"


class LoadOverBudget(Overloaded):
    """Routing passed over a local target whose model is not resident: loading it would evict
    a pinned (or busy) model, or take longer than the rule's budget. Only ever the reason a
    later target of the chain was tried; no cooldown follows."""

    default_code = "local_load_over_budget"


class InsufficientStorage(ApiError):
    """The server's disk cannot hold what the request would write (a model download)."""

    status = 507
    default_code = "insufficient_storage"


class InternalError(ApiError):
    status = 500
    default_code = "internal_error"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error as plain data: how a failure crosses from the engine to the request side.

    `kind` names the exception class (an `ApiError` subclass for errors meant for the client,
    anything else for a bug); `api_error` turns it back into the error a route raises.
    """

    kind: str
    message: str
    code: str | None = None
    param: str | None = None
    anthropic_message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, exc: Exception) -> ErrorInfo:
        if isinstance(exc, ApiError):
            return cls(
                type(exc).__name__,
                exc.message,
                exc.code,
                exc.param,
                exc.anthropic_message,
                tuple(exc.headers.items()),
            )
        return cls(type(exc).__name__, str(exc), InternalError.default_code)

    @property
    def is_client_error(self) -> bool:
        """An error meant for the client (an ApiError), not a bug."""
        return _api_error_class(self.kind) is not None

    def api_error(self) -> ApiError:
        """The error to answer with: the ApiError itself, else a 500 naming only the kind."""
        error_class = _api_error_class(self.kind)
        if error_class is None:
            return InternalError(f"generation failed: {self.kind}")
        error = error_class.__new__(error_class)
        ApiError.__init__(
            error,
            self.message,
            param=self.param,
            code=self.code,
            headers=dict(self.headers),
            anthropic_message=self.anthropic_message,
        )
        return error


def _api_error_class(name: str) -> type[ApiError] | None:
    pending: list[type[ApiError]] = [ApiError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    return None

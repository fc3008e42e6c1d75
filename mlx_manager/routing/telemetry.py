"""What the generation seam tells observability about a request: the route it took, each
attempt, each target the chain passed over, and when it answered.

Only the shape lives here; observability/route_telemetry.py counts (fallbacks) and, when
tracing is on, observability/request_spans.py makes the spans. A request's telemetry is a
context manager around the seam's submit: an exception leaving it (no target answered, a
caller error, a refused scope) ends the request's record with that error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol

from mlx_manager.errors import ApiError
from mlx_manager.routing.providers.base import GenerationProvider
from mlx_manager.routing.rules import Route, Target
from mlx_manager.types import EventStream, GenerateRequest

Submit = Callable[[GenerateRequest], Awaitable[EventStream]]


class RequestTelemetry(Protocol):
    def __enter__(self) -> RequestTelemetry: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def routed(self, chosen: Route) -> None:
        """The rule matched and the chain it runs (after the caller's scopes)."""
        ...

    def attempt(self, target: Target, provider: GenerationProvider) -> Submit:
        """`provider.submit` for one attempt at `target`, observed."""
        ...

    def failed(self, target: Target, reason: str, error: ApiError | None) -> None:
        """The chain passed over `target` (failover.FailureListener)."""
        ...

    def answered(self) -> None:
        """The seam returns the answering stream."""
        ...


class RoutingTelemetry(Protocol):
    def request(self, request: GenerateRequest) -> RequestTelemetry: ...

"""The generation seam's telemetry (routing/telemetry.py): fallbacks counted always, spans
only when tracing is on.

With tracing off a request costs one small object and no OpenTelemetry import: the spans'
module (request_spans.py) is imported by `tracing.start_tracing` only when tracing is on.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from prometheus_client import Counter

from mlx_manager.errors import ApiError
from mlx_manager.routing.providers.base import GenerationProvider
from mlx_manager.routing.rules import Route, Target
from mlx_manager.routing.telemetry import RequestTelemetry, Submit
from mlx_manager.types import GenerateRequest

if TYPE_CHECKING:
    from mlx_manager.observability.otel import Tracing

COOLDOWN = "cooldown"  # a target skipped untried: not a failure, not counted


class FallbackCount:
    """Counts each target of a chain passed over for a later one (the last target's failure
    is the answer, not a fallback)."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._last: Target | None = None

    def routed(self, chosen: Route) -> None:
        self._last = chosen.targets[-1]

    def failed(self, target: Target, reason: str) -> bool:
        """Whether this was a fallback (and was counted)."""
        if reason == COOLDOWN or target is self._last:
            return False
        self._counter.labels(target.provider, reason).inc()
        return True


class CountedRequest:
    """A request's telemetry with tracing off: its fallbacks, counted."""

    def __init__(self, counter: Counter) -> None:
        self._count = FallbackCount(counter)

    def __enter__(self) -> CountedRequest:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def routed(self, chosen: Route) -> None:
        self._count.routed(chosen)

    def attempt(self, target: Target, provider: GenerationProvider) -> Submit:
        return provider.submit

    def failed(self, target: Target, reason: str, error: ApiError | None) -> None:
        self._count.failed(target, reason)

    def answered(self) -> None:
        return None


class RouteTelemetry:
    def __init__(self, fallbacks: Counter, tracing: Tracing | None = None) -> None:
        self._fallbacks = fallbacks
        self._tracing = tracing

    def request(self, request: GenerateRequest) -> RequestTelemetry:
        if self._tracing is None:
            return CountedRequest(self._fallbacks)
        return self._tracing.request(request, FallbackCount(self._fallbacks))

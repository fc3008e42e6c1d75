"""What the generation seam tells the audit log about each request it routes.

The service asks `RouteAudit.begin` once per request; the note it gets back (None: this
request is not recorded) hears of each target as it is tried and of each one passed over, so
the audit row names the rule, the backend that answered (or the last one tried) and the
attempts before it. The audit package implements these; routing never imports it.
"""

from __future__ import annotations

from typing import Protocol

from mlx_manager.errors import ApiError
from mlx_manager.routing.providers.base import GenerationProvider
from mlx_manager.routing.rules import Route, Target
from mlx_manager.types import GenerateRequest


class RouteNote(Protocol):
    def trying(self, target: Target, provider: GenerationProvider, left_machine: bool) -> None:
        """`target` is about to be sent the request (through `provider`)."""
        ...

    def failed(self, target: Target, failure: str, error: ApiError | None) -> None:
        """`target` was passed over: its failure class ("cooldown": skipped untried)."""
        ...


class RouteAudit(Protocol):
    def begin(self, request: GenerateRequest, route: Route) -> RouteNote | None: ...

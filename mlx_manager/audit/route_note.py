"""The generation seam's audit hook (routing/route_audit.py), writing into the record of
the request being routed (found through its context: the seam sees no HTTP scope)."""

from __future__ import annotations

from mlx_manager.audit.record import CURRENT, AuditRecord
from mlx_manager.config import LOCAL_PROVIDER
from mlx_manager.errors import ApiError
from mlx_manager.routing.providers.base import GenerationProvider
from mlx_manager.routing.rules import Route, Target
from mlx_manager.types import GenerateRequest


def backend_kind(target: Target, provider: GenerationProvider) -> str:
    """local, openai, openai_compatible or anthropic: an upstream's kind is its settings'."""
    if target.provider == LOCAL_PROVIDER:
        return LOCAL_PROVIDER
    settings = getattr(getattr(provider, "http", None), "settings", None)
    return str(getattr(settings, "kind", None) or "upstream")


class RouteNote:
    def __init__(self, record: AuditRecord) -> None:
        self._record = record

    def trying(self, target: Target, provider: GenerationProvider, left_machine: bool) -> None:
        record = self._record
        record.backend = target.provider
        record.backend_type = backend_kind(target, provider)
        record.served_model = target.model
        record.left_machine = record.left_machine or left_machine  # any target tried

    def failed(self, target: Target, failure: str, error: ApiError | None) -> None:
        status = error.status if error is not None else None
        self._record.attempts.append([target.key, failure, status])


class RouteAuditor:
    """`begin` for every routed request; only those with a record get a note."""

    def __init__(self, prompts: bool) -> None:
        self._prompts = prompts

    def begin(self, request: GenerateRequest, route: Route) -> RouteNote | None:
        record = CURRENT.get()
        if record is None:
            return None
        record.routed(route.requested, route.rule.pattern if route.rule is not None else None)
        if self._prompts:
            record.keep_prompt(request)
        return RouteNote(record)

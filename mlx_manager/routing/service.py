"""The generation seam: every route that generates text calls this service.

Routes convert their wire request into a `GenerateRequest` and hand it over with the caller's
principal; the service routes the model name (rules.route: exact, longest prefix, regex,
aliases as exact rules, else the local pool), runs the chain of targets with failover and
returns the answering `RoutedStream` (which names its backend). Accounts' scopes, metrics
and the audit log plug in here, so the routes never change for them.

A name no rule matches goes to the local pool directly, as before routing existed: no peek
at the first event, no cooldown. A rule's chain runs through failover.run_chain; with one
target there is nothing to fail over to, so its stream is returned at once.

Rules and upstream providers are one immutable `RoutingTable`, swapped whole when an admin
changes them (routing/live.py): a request reads the table once, so it keeps the configuration
it started with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.config import LOCAL_PROVIDER
from mlx_manager.errors import ApiError, ModelNotFound
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.failover import (
    Backend,
    Cooldowns,
    FailureListener,
    RoutedStream,
    run_chain,
)
from mlx_manager.routing.pool_aware import PoolAware
from mlx_manager.routing.providers.base import GenerationProvider
from mlx_manager.routing.route_audit import RouteAudit
from mlx_manager.routing.rules import Route, RuleSet, Target, route
from mlx_manager.routing.scopes import UsageGate, governed, scoped
from mlx_manager.routing.telemetry import RequestTelemetry, RoutingTelemetry
from mlx_manager.security.principal import Principal
from mlx_manager.types import EventStream, GenerateRequest

# Wraps a request's stream to observe it (metrics): (stream, request, backend) -> stream.
StreamObserver = Callable[[EventStream, GenerateRequest, str], EventStream]


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """The rules and the upstream providers they name, valid together."""

    rules: RuleSet
    upstreams: Mapping[str, GenerationProvider] = field(default_factory=dict)

    def provider(self, target: Target, local: GenerationProvider) -> GenerationProvider:
        if target.provider == LOCAL_PROVIDER:
            return local
        provider = self.upstreams.get(target.provider)
        if provider is None:  # a table is validated whole, so this is unreachable
            raise ModelNotFound(f"no provider {target.provider!r}")
        return provider

    def left_machine(self, target: Target) -> bool:
        if target.provider == LOCAL_PROVIDER:
            return False
        return bool(getattr(self.upstreams.get(target.provider), "left_machine", True))


class GenerationService:
    def __init__(
        self,
        local: GenerationProvider,
        aliases: AliasTable,
        upstreams: Mapping[str, GenerationProvider] | None = None,
        rules: RuleSet | None = None,
        cooldowns: Cooldowns | None = None,
        observe: StreamObserver | None = None,
        pool_aware: PoolAware | None = None,
        usage: UsageGate | None = None,
        telemetry: RoutingTelemetry | None = None,
        audit: RouteAudit | None = None,
    ) -> None:
        self._local = local
        self._aliases = aliases
        self._table = RoutingTable(
            rules if rules is not None else RuleSet.build((), aliases), dict(upstreams or {})
        )
        self._cooldowns = cooldowns or Cooldowns(3, 30.0)
        self._observe = observe
        self._pool_aware = pool_aware or PoolAware()
        self._usage = usage
        self._telemetry = telemetry
        self._audit = audit

    @property
    def table(self) -> RoutingTable:
        return self._table

    def swap(self, table: RoutingTable) -> RoutingTable:
        """Serve new requests from `table`; the previous one (in-flight requests keep it)."""
        previous, self._table = self._table, table
        return previous

    def served_model(self, name: str) -> str:
        """The served model a requested name means (aliases applied)."""
        return self._aliases.resolve(name)

    def route(self, name: str) -> Route:
        return route(self._table.rules, name)

    @property
    def cooldowns(self) -> Cooldowns:
        return self._cooldowns

    async def submit(self, request: GenerateRequest, principal: Principal) -> EventStream:
        """Queue a generation: an ApiError before anything streams, else its event stream."""
        if self._telemetry is None:
            return await self._submit(request, principal, None)
        with self._telemetry.request(request) as telemetry:  # fallbacks counted; spans
            stream = await self._submit(request, principal, telemetry)
            telemetry.answered()
            return stream

    async def _submit(
        self, request: GenerateRequest, principal: Principal, telemetry: RequestTelemetry | None
    ) -> EventStream:
        table = self._table  # this request's configuration, whatever is swapped in meanwhile
        chosen = scoped(route(table.rules, request.model), principal, table.left_machine)
        if telemetry is not None:
            telemetry.routed(chosen)
        note = self._audit.begin(request, chosen) if self._audit is not None else None
        usage = self._usage if principal.user_id is not None else None
        if usage is not None:
            usage.admit(principal)

        async def attempt(target: Target) -> tuple[EventStream, bool]:
            provider = table.provider(target, self._local)
            if note is not None:  # the audit log: who was tried, and whether data left
                note.trying(target, provider, table.left_machine(target))
            sent = _for(request, target)
            submit = provider.submit if telemetry is None else telemetry.attempt(target, provider)
            stream = await submit(sent)
            if self._observe is not None:  # each attempt, by the backend that ran it
                stream = self._observe(stream, sent, target.provider)
            if usage is not None:
                stream = governed(stream, principal, usage)
            return stream, table.left_machine(target)

        if len(chosen.targets) == 1:
            target = chosen.targets[0]
            stream, left = await attempt(target)
            return RoutedStream(stream, Backend(target, left))
        precheck = self._pool_aware.precheck(chosen)
        failed = _listeners(
            telemetry.failed if telemetry is not None else None,
            note.failed if note is not None else None,
        )
        return await run_chain(chosen, attempt, self._cooldowns, precheck, failed)

    async def count_tokens(self, request: GenerateRequest, principal: Principal) -> int:
        """Prompt tokens of a request as its (first) model would see it (tools included)."""
        table = self._table
        target = scoped(route(table.rules, request.model), principal, table.left_machine).targets[0]
        return await table.provider(target, self._local).count_tokens(_for(request, target))

    def explain(self, name: str) -> dict[str, Any]:
        """Which rule `name` matches and the chain it runs (GET /admin/routes/explain)."""
        table = self._table
        chosen = route(table.rules, name)
        return {
            "model": name,
            "rule": chosen.rule.describe() if chosen.rule is not None else None,
            "chain": [
                {
                    "provider": t.provider,
                    "model": t.model,
                    "data_leaves_machine": table.left_machine(t),
                    "cooldown_s": round(self._cooldowns.remaining(t.key), 3),
                    **self._pool_aware.describe(t),
                }
                for t in chosen.targets
            ],
        }


def _listeners(*listeners: FailureListener | None) -> FailureListener | None:
    """One listener telling each of `listeners` (None when there are none)."""
    present = [listener for listener in listeners if listener is not None]
    if len(present) <= 1:
        return present[0] if present else None

    def tell_each(target: Target, failure: str, error: ApiError | None) -> None:
        for listener in present:
            listener(target, failure, error)

    return tell_each


def _for(request: GenerateRequest, target: Target) -> GenerateRequest:
    if target.model == request.model:
        return request
    return dataclasses.replace(request, model=target.model)

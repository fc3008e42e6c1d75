"""An API key's scopes, applied at the generation seam: the models it may name, whether its
requests may leave the machine (`local_only` drops upstream targets from the chain), and its
rate (a `UsageGate` counts requests before and tokens after)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from mlx_manager.errors import AuthenticationFailed, ErrorInfo, PermissionDenied, shorten
from mlx_manager.routing.rules import Route, Target
from mlx_manager.security.principal import Principal
from mlx_manager.types import EventStream, FinishReason, GenerationEvent, PassThroughStream


class UsageGate(Protocol):
    def admit(self, principal: Principal) -> None:
        """Count a request, or raise RateLimited."""
        ...

    def spend(self, principal: Principal, tokens: int) -> None: ...

    def still_valid(self, principal: Principal) -> bool:
        """False once the principal's account changed (role, disabled, password) or its key
        was revoked: its streams end at once, not when they finish."""
        ...


def scoped(chosen: Route, principal: Principal, leaves: Callable[[Target], bool]) -> Route:
    """`chosen` as `principal` may run it: a 403 for a model outside its key's patterns, and
    with `local_only` only the targets that keep the data on this machine."""
    scopes = principal.scopes
    if not scopes.allows_model(chosen.requested):
        raise PermissionDenied(
            f"this API key may not use the model {shorten(chosen.requested, 128)!r}",
            param="model",
            code="model_not_allowed",
        )
    if not scopes.local_only:
        return chosen
    targets = tuple(t for t in chosen.targets if not leaves(t))
    if not targets:
        raise PermissionDenied(
            f"this API key is local-only, and {shorten(chosen.requested, 128)!r} is served "
            "off this machine",
            param="model",
            code="local_only",
        )
    return dataclasses.replace(chosen, targets=targets)


def governed(stream: EventStream, principal: Principal, gate: UsageGate) -> EventStream:
    """`stream`, its tokens counted against the principal's key and ended the moment the
    principal is no longer valid."""
    return _Governed(stream, principal, gate)


class _Governed(PassThroughStream):
    def __init__(self, stream: EventStream, principal: Principal, gate: UsageGate) -> None:
        super().__init__(stream)
        self._principal = principal
        self._gate = gate

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        principal, gate = self._principal, self._gate
        async for event in self._stream:
            if not gate.still_valid(principal):
                self._stream.abort()
                ended = AuthenticationFailed("the session ended: the account or key changed")
                yield GenerationEvent(
                    event.request_id, finish_reason=FinishReason.ERROR, error=ErrorInfo.of(ended)
                )
                return
            if event.finished and event.usage is not None:
                gate.spend(principal, event.usage.total_tokens)
            yield event

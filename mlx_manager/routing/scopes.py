"""An API key's scopes, applied at the generation seam: the models it may name, whether its
requests may leave the machine (`local_only` drops upstream targets from the chain), and its
rate (a `UsageGate` counts requests before and tokens after)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from mlx_manager.errors import PermissionDenied, shorten
from mlx_manager.routing.rules import Route, Target
from mlx_manager.security.principal import Principal
from mlx_manager.types import EventStream, GenerationEvent


class UsageGate(Protocol):
    def admit(self, principal: Principal) -> None:
        """Count a request, or raise RateLimited."""
        ...

    def spend(self, principal: Principal, tokens: int) -> None: ...


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


def counting_tokens(stream: EventStream, spend: Callable[[int], None]) -> EventStream:
    return _Counted(stream, spend)


class _Counted:
    def __init__(self, stream: EventStream, spend: Callable[[int], None]) -> None:
        self._stream = stream
        self._spend = spend

    @property
    def prompt_tokens(self) -> int:
        return self._stream.prompt_tokens

    def abort(self) -> None:
        self._stream.abort()

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        async for event in self._stream:
            if event.finished and event.usage is not None:
                self._spend(event.usage.total_tokens)
            yield event

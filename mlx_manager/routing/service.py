"""The generation seam: every route that generates text calls this service.

Routes convert their wire request into a `GenerateRequest` and hand it over with the caller's
principal; the service resolves the model name (aliases today, routing rules later), picks the
provider and returns its `EventStream`. Routing, accounts' scopes, metrics and the audit log
plug in here, so the routes never change for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.providers.base import GenerationProvider
from mlx_manager.security.principal import Principal
from mlx_manager.types import EventStream, GenerateRequest

# Wraps a request's stream to observe it (metrics): (stream, request, backend) -> stream.
StreamObserver = Callable[[EventStream, GenerateRequest, str], EventStream]


class GenerationService:
    def __init__(
        self,
        local: GenerationProvider,
        aliases: AliasTable,
        observe: StreamObserver | None = None,
    ) -> None:
        self._local = local
        self._aliases = aliases
        self._observe = observe

    def served_model(self, name: str) -> str:
        """The served model a requested name means (aliases applied)."""
        return self._aliases.resolve(name)

    async def submit(self, request: GenerateRequest, principal: Principal) -> EventStream:
        """Queue a generation: an ApiError before anything streams, else its event stream."""
        resolved = self._resolved(request)
        provider = self._provider(resolved)
        stream = await provider.submit(resolved)
        return self._observe(stream, resolved, provider.name) if self._observe else stream

    async def count_tokens(self, request: GenerateRequest, principal: Principal) -> int:
        """Prompt tokens of a request as its model would see it (tools included)."""
        return await self._provider(request).count_tokens(self._resolved(request))

    def _resolved(self, request: GenerateRequest) -> GenerateRequest:
        served = self.served_model(request.model)
        return request if served == request.model else dataclasses.replace(request, model=served)

    def _provider(self, request: GenerateRequest) -> GenerationProvider:
        return self._local  # the only provider until upstream routing lands

"""Upstreams that speak Anthropic Messages (Anthropic itself, or another MLX Manager)."""

from __future__ import annotations

from typing import Any

from mlx_manager.config import ProviderSettings
from mlx_manager.errors import UpstreamUnavailable
from mlx_manager.protocols import anthropic_upstream
from mlx_manager.routing.providers.upstream import HttpUpstream, upstream_key_from_env
from mlx_manager.routing.providers.whole_answer import WholeAnswer
from mlx_manager.types import EventStream, GenerateRequest

API_VERSION = "2023-06-01"
PATH = "/v1/messages"
_COUNTED_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")


class AnthropicProvider:
    def __init__(self, settings: ProviderSettings, api_key: str | None = None) -> None:
        key = api_key or upstream_key_from_env(settings)
        headers = {"anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key
        self.http = HttpUpstream(settings, headers, (key,))
        self.name = settings.name
        self._default_max_tokens = settings.default_max_tokens

    @property
    def left_machine(self) -> bool:
        return self.http.left_machine

    async def probe(self) -> str | None:
        return await self.http.probe("/v1/models")

    def _body(self, request: GenerateRequest) -> dict[str, Any]:
        return anthropic_upstream.messages_body(request, request.model, self._default_max_tokens)

    async def submit(self, request: GenerateRequest) -> EventStream:
        decoder = anthropic_upstream.MessageStreamDecoder(request.request_id, self.name)
        body = self._body(request)
        if not request.stream:  # the caller wants it whole: so is the upstream asked
            return WholeAnswer(self.http, PATH, body, decoder.whole, request.request_id)
        return await self.http.open(PATH, body, decoder, request.request_id)

    async def count_tokens(self, request: GenerateRequest) -> int:
        body = self._body(request)
        counted = {k: v for k, v in body.items() if k in _COUNTED_FIELDS}
        answer = await self.http.post_json("/v1/messages/count_tokens", counted)
        tokens = answer.get("input_tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, int):
            raise UpstreamUnavailable(f"upstream {self.name!r} sent no input_tokens")
        return tokens

    async def aclose(self) -> None:
        await self.http.aclose()

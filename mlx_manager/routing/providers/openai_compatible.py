"""Upstreams that speak OpenAI chat completions: OpenAI itself (kind `openai`) and any
compatible server (`openai_compatible`: vLLM, Ollama, another MLX Manager)."""

from __future__ import annotations

from mlx_manager.config import ProviderSettings
from mlx_manager.protocols import openai_upstream
from mlx_manager.routing.providers.upstream import HttpUpstream, upstream_key_from_env
from mlx_manager.routing.providers.whole_answer import WholeAnswer
from mlx_manager.types import EventStream, GenerateRequest

PATH = "/chat/completions"
CHARS_PER_TOKEN = 4  # count_tokens estimate: OpenAI's API has no counting endpoint


class OpenAICompatibleProvider:
    def __init__(self, settings: ProviderSettings, api_key: str | None = None) -> None:
        key = api_key or upstream_key_from_env(settings)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = HttpUpstream(settings, headers, (key,))
        self.name = settings.name
        self._dialect: openai_upstream.Dialect = (
            "openai" if settings.kind == "openai" else "openai_compatible"
        )

    @property
    def left_machine(self) -> bool:
        return self.http.left_machine

    async def probe(self) -> str | None:
        return await self.http.probe("/models")

    async def submit(self, request: GenerateRequest) -> EventStream:
        body = openai_upstream.chat_body(request, request.model, self._dialect)
        decoder = openai_upstream.ChatStreamDecoder(request.request_id, self.name)
        if not request.stream:  # the caller wants it whole: so is the upstream asked
            return WholeAnswer(self.http, PATH, body, decoder.whole, request.request_id)
        return await self.http.open(PATH, body, decoder, request.request_id)

    async def count_tokens(self, request: GenerateRequest) -> int:
        """An estimate (characters / 4): the chat completions API cannot count."""
        messages = openai_upstream.check_chat(request)
        chars = sum(len(m.content) + len(m.role) for m in messages)
        chars += sum(
            len(t.name) + len(t.description) + len(str(t.parameters)) for t in request.tools
        )
        return max(1, chars // CHARS_PER_TOKEN)

    async def aclose(self) -> None:
        await self.http.aclose()

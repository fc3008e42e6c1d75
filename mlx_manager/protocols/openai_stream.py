"""OpenAI chat streaming as a pure encoder: internal events in, ``chat.completion.chunk``s out.

Tool calls stream as vLLM and OpenAI send them: a first delta per call with ``index``, ``id``,
``type`` and the function name (empty arguments), then the arguments as they decode; every
delta carries ``index``. Reasoning streams as ``reasoning_content`` deltas.
"""

from __future__ import annotations

from typing import Any

from mlx_manager.protocols.openai_convert import chat_chunk, chat_usage_chunk
from mlx_manager.types import GenerationEvent, ToolCallDelta

Chunk = dict[str, Any]


class ChatStreamEncoder:
    def __init__(
        self,
        completion_id: str,
        model: str,
        created: int,
        include_usage: bool = False,
        want_logprobs: bool = False,
    ) -> None:
        self._id = completion_id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._want_logprobs = want_logprobs

    def _chunk(self, delta: dict[str, Any], **kwargs: Any) -> Chunk:
        return chat_chunk(
            self._id,
            self._model,
            self._created,
            delta,
            with_usage_field=self._include_usage,
            **kwargs,
        )

    def start(self) -> list[Chunk]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def feed(self, event: GenerationEvent) -> list[Chunk]:
        out: list[Chunk] = []
        if event.reasoning:
            out.append(self._chunk({"reasoning_content": event.reasoning}))
        if event.text or (self._want_logprobs and event.logprobs):
            logprobs = list(event.logprobs) if self._want_logprobs else None
            out.append(self._chunk({"content": event.text}, logprobs=logprobs))
        for piece in event.tool_call_deltas:
            out += self._tool_call(piece)
        if event.finished:
            out.append(self._chunk({}, reason=event.finish_reason))
            if self._include_usage and event.usage is not None:
                out.append(chat_usage_chunk(self._id, self._model, self._created, event.usage))
        return out

    def _tool_call(self, piece: ToolCallDelta) -> list[Chunk]:
        out = []
        if piece.name is not None:  # a call's first piece
            head = {
                "index": piece.index,
                "id": piece.id,
                "type": "function",
                "function": {"name": piece.name, "arguments": ""},
            }
            out.append(self._chunk({"tool_calls": [head]}))
        if piece.arguments:
            body = {"index": piece.index, "function": {"arguments": piece.arguments}}
            out.append(self._chunk({"tool_calls": [body]}))
        return out

"""Anthropic Messages replies, streamed and whole."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from mlx_manager.protocols import anthropic_convert as convert
from mlx_manager.protocols.anthropic_schemas import MessagesRequest
from mlx_manager.protocols.anthropic_stream import MessageStreamEncoder
from mlx_manager.protocols.replies import Payload, last_of
from mlx_manager.types import GenerationEvent


class MessageReply:
    named_events = True

    def __init__(self, body: MessagesRequest, prompt_tokens: int) -> None:
        self._model = body.model
        self._prompt_tokens = prompt_tokens  # message_start reports it before any output
        self._id = f"msg_{uuid.uuid4().hex[:24]}"

    async def stream(self, events: AsyncIterator[GenerationEvent]) -> AsyncIterator[Payload]:
        encoder = MessageStreamEncoder(self._id, self._model, self._prompt_tokens)
        for event in encoder.start():
            yield event
        yield {"type": "ping"}
        async for generated in events:
            if generated.error is not None:
                for event in encoder.error(generated.error.api_error()):
                    yield event
                return
            for event in encoder.feed(generated):
                yield event

    def body(self, events: list[GenerationEvent]) -> dict[str, Any]:
        last, usage = last_of(events)
        content = convert.content_blocks(
            "".join(e.text for e in events),
            "".join(e.reasoning for e in events),
            [c for e in events for c in e.tool_calls],
        )
        return convert.message(
            self._id, self._model, content, last.finish_reason, last.stop_sequence, usage
        )

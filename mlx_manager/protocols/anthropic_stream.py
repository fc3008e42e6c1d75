"""Anthropic streaming as a pure encoder: internal events in, Messages stream events out.

The sequence is Anthropic's: ``message_start``, then per content block ``content_block_start``,
``content_block_delta`` (``thinking_delta``, ``text_delta``, ``input_json_delta``) and
``content_block_stop``, then ``message_delta`` (stop reason and usage) and ``message_stop``.
Pings are the transport's business (api/streaming.py). Each event is a dict whose ``type`` is
also its SSE event name.
"""

from __future__ import annotations

from typing import Any

from mlx_manager.errors import ApiError
from mlx_manager.protocols.anthropic_convert import stop_reason, usage_dict
from mlx_manager.types import GenerationEvent, ToolCallDelta, Usage

Event = dict[str, Any]


class MessageStreamEncoder:
    def __init__(self, message_id: str, model: str, prompt_tokens: int) -> None:
        self._message_id = message_id
        self._model = model
        self._prompt_tokens = prompt_tokens
        self._index = -1
        self._open: str | None = None  # the open block's kind: thinking, text, tool_use

    def start(self) -> list[Event]:
        usage = usage_dict(Usage(self._prompt_tokens, 0))
        message: Event = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 0},
        }
        return [{"type": "message_start", "message": message}]

    def feed(self, event: GenerationEvent) -> list[Event]:
        out: list[Event] = []
        if event.reasoning:
            out += self._delta("thinking", {"type": "thinking_delta", "thinking": event.reasoning})
        if event.text:
            out += self._delta("text", {"type": "text_delta", "text": event.text})
        for piece in event.tool_call_deltas:
            out += self._tool_use(piece)
        if event.finished:
            out += self._finish(event)
        return out

    def error(self, error: ApiError) -> list[Event]:
        return [error.anthropic_body()]

    def _delta(self, kind: str, delta: Event) -> list[Event]:
        out: list[Event] = []
        if self._open != kind:
            out += self._close()
            block: Event = {"type": "text", "text": ""}
            if kind == "thinking":
                block = {"type": "thinking", "thinking": "", "signature": ""}
            out.append(self._block_start(block))
            self._open = kind
        out.append({"type": "content_block_delta", "index": self._index, "delta": delta})
        return out

    def _block_start(self, block: Event) -> Event:
        self._index += 1
        return {"type": "content_block_start", "index": self._index, "content_block": block}

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        self._open = None
        return [{"type": "content_block_stop", "index": self._index}]

    def _tool_use(self, piece: ToolCallDelta) -> list[Event]:
        """A call's first piece opens its tool_use block; its arguments follow as they decode
        and the block closes when the next block opens or the message ends."""
        out: list[Event] = []
        if piece.name is not None:
            block: Event = {"type": "tool_use", "id": piece.id, "name": piece.name, "input": {}}
            out += [*self._close(), self._block_start(block)]
            self._open = "tool_use"
        if piece.arguments and self._open == "tool_use":
            delta = {"type": "input_json_delta", "partial_json": piece.arguments}
            out.append({"type": "content_block_delta", "index": self._index, "delta": delta})
        return out

    def _finish(self, event: GenerationEvent) -> list[Event]:
        out = self._close()
        if self._index < 0:  # nothing was generated: still one (empty) text block
            out += [self._block_start({"type": "text", "text": ""}), *self._close_index()]
        usage = usage_dict(event.usage) if event.usage is not None else {"output_tokens": 0}
        delta = {
            "stop_reason": stop_reason(event.finish_reason, event.stop_sequence),
            "stop_sequence": event.stop_sequence,
        }
        out.append({"type": "message_delta", "delta": delta, "usage": usage})
        out.append({"type": "message_stop"})
        return out

    def _close_index(self) -> list[Event]:
        return [{"type": "content_block_stop", "index": self._index}]

"""Responses API replies, streamed and whole.

`on_done` receives the assistant's turn (its text and calls, as the conversation store keeps
it) once a reply has completed, so ``previous_response_id`` can carry the conversation on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from mlx_manager.protocols.replies import Payload, last_of
from mlx_manager.protocols.responses_output import ResponseShell, output_items, status_of
from mlx_manager.protocols.responses_stream import ResponseStreamEncoder
from mlx_manager.types import ChatMessage, GenerationEvent, ToolCall

OnDone = Callable[[ChatMessage], None]


def assistant_turn(text: str, calls: list[ToolCall]) -> ChatMessage:
    return ChatMessage("assistant", text, tool_calls=tuple(calls))


class ResponsesReply:
    named_events = True

    def __init__(self, shell: ResponseShell, on_done: OnDone | None = None) -> None:
        self._shell = shell
        self._on_done = on_done

    @property
    def response_id(self) -> str:
        return self._shell.response_id

    async def stream(self, events: AsyncIterator[GenerationEvent]) -> AsyncIterator[Payload]:
        encoder = ResponseStreamEncoder(self._shell)
        for event in encoder.start():
            yield event
        text: list[str] = []
        calls: list[ToolCall] = []
        async for generated in events:
            if generated.error is not None:
                for event in encoder.fail(generated.error.api_error()):
                    yield event
                return
            text.append(generated.text)
            calls += generated.tool_calls
            if generated.finished:
                self._done("".join(text), calls)
            for event in encoder.feed(generated):
                yield event

    def body(self, events: list[GenerationEvent]) -> dict[str, Any]:
        last, usage = last_of(events)
        text = "".join(e.text for e in events)
        calls = [c for e in events for c in e.tool_calls]
        status, reason = status_of(last.finish_reason)
        item_status = "incomplete" if reason is not None else "completed"
        reasoning = "".join(e.reasoning for e in events)
        output = output_items(text, reasoning, calls, item_status, self._shell)
        self._done(text, calls)
        return self._shell.response(status, output, usage, incomplete_reason=reason)

    def _done(self, text: str, calls: list[ToolCall]) -> None:
        if self._on_done is not None:
            self._on_done(assistant_turn(text, calls))

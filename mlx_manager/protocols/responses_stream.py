"""Responses API streaming as a pure encoder: internal events in, Responses stream events out.

The sequence is OpenAI's: ``response.created`` and ``response.in_progress``; per output item
``response.output_item.added``, its content (``response.content_part.added``, then
``response.output_text.delta`` or ``response.reasoning_text.delta``, then the ``.done``s, or
``response.function_call_arguments.delta`` / ``.done`` for a call; for a custom tool's call
its input, once whole, as ``response.custom_tool_call_input.delta`` / ``.done``: the
arguments decode as JSON around it; a tool search's call has no events of its own) and
``response.output_item.done``; finally ``response.completed`` (``response.incomplete`` when
``max_output_tokens`` cut it) with the whole response and its usage. A failure mid-stream is
an ``error`` event and then ``response.failed``. Every event carries ``type`` (also its SSE
event name) and ``sequence_number``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlx_manager.errors import ApiError
from mlx_manager.protocols.responses_output import (
    Item,
    ResponseShell,
    error_dict,
    message_item,
    new_id,
    reasoning_item,
    reasoning_part,
    status_of,
    text_part,
)
from mlx_manager.types import GenerationEvent, ToolCall, ToolCallDelta

Event = dict[str, Any]

# Per kind of text item: how it is made, its content part, its delta and done event types.
_TEXT_KINDS = {
    "message": ("msg", message_item, text_part, "response.output_text"),
    "reasoning": ("rs", reasoning_item, reasoning_part, "response.reasoning_text"),
}


@dataclass(slots=True)
class _OpenText:
    kind: str  # message, reasoning
    index: int
    item_id: str
    text: str = ""


@dataclass(slots=True)
class _OpenCall:
    index: int
    item_id: str
    call_id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class ResponseStreamEncoder:
    def __init__(self, shell: ResponseShell) -> None:
        self._shell = shell
        self._sequence = 0
        self._output: list[Item] = []  # by output_index; the final shape once done
        self._text: _OpenText | None = None
        self._calls: dict[int, _OpenCall] = {}  # open calls by their delta index

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def start(self) -> list[Event]:
        response = self._shell.response("in_progress", [])
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def feed(self, event: GenerationEvent) -> list[Event]:
        out: list[Event] = []
        if event.reasoning:
            out += self._text_delta("reasoning", event.reasoning)
        if event.text:
            out += self._text_delta("message", event.text)
        out += self.tool_call_events(event.tool_call_deltas, event.tool_calls)
        if event.finished:
            out += self._finish(event)
        return out

    def fail(self, error: ApiError) -> list[Event]:
        """A generation that failed mid-stream: an ``error`` event, then ``response.failed``."""
        failure = error_dict(error.code, error.message)
        response = self._shell.response("failed", self._output, error=failure)
        return [
            self._event("error", code=error.code, message=error.message, param=error.param),
            self._event("response.failed", response=response),
        ]

    # --- text items (message, reasoning) -------------------------------------------------

    def _text_delta(self, kind: str, delta: str) -> list[Event]:
        out: list[Event] = []
        if self._text is None or self._text.kind != kind:
            out += self._close_text("completed")
            out += self._open_text(kind)
        assert self._text is not None
        self._text.text += delta
        prefix = _TEXT_KINDS[kind][3]
        fields: dict[str, Any] = {"logprobs": []} if kind == "message" else {}
        out.append(self._event(f"{prefix}.delta", **self._where(self._text), delta=delta, **fields))
        return out

    def _where(self, item: _OpenText) -> dict[str, Any]:
        return {"item_id": item.item_id, "output_index": item.index, "content_index": 0}

    def _open_text(self, kind: str) -> list[Event]:
        id_prefix, make_item, make_part, _ = _TEXT_KINDS[kind]
        item = _OpenText(kind, len(self._output), new_id(id_prefix))
        self._output.append(make_item(item.item_id, None, "in_progress"))
        self._text = item
        where = self._where(item)
        added = self._output[-1]
        return [
            self._event("response.output_item.added", output_index=item.index, item=added),
            self._event("response.content_part.added", **where, part=make_part("")),
        ]

    def _close_text(self, status: str) -> list[Event]:
        item, self._text = self._text, None
        if item is None:
            return []
        _, make_item, make_part, prefix = _TEXT_KINDS[item.kind]
        done = make_item(item.item_id, item.text, status)
        self._output[item.index] = done
        where = self._where(item)
        fields: dict[str, Any] = {"logprobs": []} if item.kind == "message" else {}
        return [
            self._event(f"{prefix}.done", **where, text=item.text, **fields),
            self._event("response.content_part.done", **where, part=make_part(item.text)),
            self._event("response.output_item.done", output_index=item.index, item=done),
        ]

    # --- function calls ------------------------------------------------------------------

    def tool_call_events(
        self, deltas: tuple[ToolCallDelta, ...], calls: tuple[ToolCall, ...]
    ) -> list[Event]:
        """Calls as they decode: a delta with id/name opens a ``function_call`` item, the
        arguments of each delta stream as ``function_call_arguments.delta``, and the complete
        call closes it. A complete call that came without deltas opens, streams in one
        delta and closes at once."""
        out: list[Event] = []
        for delta in deltas:
            if delta.id is not None or delta.name is not None:
                out += self._open_call(delta.index, delta.id or new_id("call"), delta.name or "")
            if delta.arguments and delta.index in self._calls:
                out += self._call_delta(self._calls[delta.index], delta.arguments)
        for call in calls:
            key = next((k for k, c in self._calls.items() if c.call_id == call.id), None)
            if key is None:
                key = min(self._calls, default=0) - 1  # never a delta index
                out += self._open_call(key, call.id, call.name)
                out += self._call_delta(self._calls[key], call.arguments)
            out += self._close_call(key, call.arguments, "completed")
        return out

    def _open_call(self, key: int, call_id: str, name: str) -> list[Event]:
        out = self._close_text("completed")
        call = _OpenCall(len(self._output), self._shell.new_call_id(name), call_id, name)
        self._calls[key] = call
        item = self._shell.call_item(call.item_id, ToolCall(call_id, name, ""), "in_progress")
        self._output.append(item)
        out.append(self._event("response.output_item.added", output_index=call.index, item=item))
        return out

    def _call_delta(self, call: _OpenCall, arguments: str) -> list[Event]:
        call.arguments.append(arguments)
        if self._shell.call_type(call.name) != "function_call":  # sent whole when it closes
            return []
        return [
            self._event(
                "response.function_call_arguments.delta",
                item_id=call.item_id,
                output_index=call.index,
                delta=arguments,
            )
        ]

    def _close_call(self, key: int, arguments: str | None, status: str) -> list[Event]:
        call = self._calls.pop(key)
        text = "".join(call.arguments) if arguments is None else arguments
        done = self._shell.call_item(call.item_id, ToolCall(call.call_id, call.name, text), status)
        self._output[call.index] = done
        where = {"item_id": call.item_id, "output_index": call.index}
        if done["type"] == "custom_tool_call":
            events = [
                self._event("response.custom_tool_call_input.delta", **where, delta=done["input"]),
                self._event("response.custom_tool_call_input.done", **where, input=done["input"]),
            ]
        elif done["type"] == "function_call":
            events = [self._event("response.function_call_arguments.done", **where, arguments=text)]
        else:
            events = []
        events.append(self._event("response.output_item.done", output_index=call.index, item=done))
        return events

    # --- the end -------------------------------------------------------------------------

    def _finish(self, event: GenerationEvent) -> list[Event]:
        status, reason = status_of(event.finish_reason)
        item_status = "incomplete" if reason is not None else "completed"
        out = self._close_text(item_status)
        for key in list(self._calls):  # calls cut off before they completed
            out += self._close_call(key, None, "incomplete")
        if not self._output:  # nothing was generated: still one (empty) message
            out += self._open_text("message")
            out += self._close_text(item_status)
        response = self._shell.response(status, self._output, event.usage, incomplete_reason=reason)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, response=response))
        return out

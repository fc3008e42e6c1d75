"""Tool calls piece by piece while they decode, for streamed replies.

Agent UIs show a call's arguments as they are written; the parsers (mlx-lm's) only read a
finished call. For the JSON call formats (Hermes `<tool_call>{"name": ..., "arguments": {...}}`,
Llama 3's bare `{"name": ..., "parameters": {...}}`), this scanner follows the call's JSON as it
grows, one character at a time (calls are short): once the name's string is complete the call
opens (id and name), then the arguments' raw JSON text is handed on as it arrives, up to the
end of that value. Other formats stream each call whole once it is parsed (`whole_call`).

Why our own: neither mlx-lm nor a JSON library here parses incrementally with positions; this
needs only string/escape state, nesting depth and which key a value belongs to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mlx_manager.models.tool_formats import new_call_id
from mlx_manager.types import ToolCall, ToolCallDelta

ARGUMENT_KEYS = ("arguments", "parameters")


@dataclass(slots=True)
class StreamedCall:
    index: int
    id: str = field(default_factory=new_call_id)
    name: str | None = None
    arguments: list[str] = field(default_factory=list)  # the pieces handed on so far
    opened: bool = False

    def as_call(self) -> ToolCall:
        """The call as generated so far (arguments may be cut short)."""
        return ToolCall(self.id, self.name or "", "".join(self.arguments))


class JsonCallScanner:
    """Follows the text of one call block (after its start marker) as it grows."""

    def __init__(self, first_index: int) -> None:
        self._next_index = first_index
        self._pos = 0
        self._base = 0  # 1 when the calls sit in a JSON list
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._string_start = -1
        self._expect_key = False
        self._key: str | None = None  # the key whose value is being read (call level)
        self._value_start = -1
        self._args_emitted = 0  # position up to which the arguments were handed on
        self.calls: list[StreamedCall] = []

    @property
    def _call(self) -> StreamedCall | None:
        return self.calls[-1] if self.calls and self._depth > self._base else None

    def feed(self, text: str) -> list[ToolCallDelta]:
        """Pieces for what `text` (the whole block so far) adds since the last call."""
        deltas: list[ToolCallDelta] = []
        while self._pos < len(text):
            self._step(text, text[self._pos], deltas)
            self._pos += 1
        self._stream_arguments(text, self._pos, deltas)
        return deltas

    def _step(self, text: str, char: str, deltas: list[ToolCallDelta]) -> None:
        if self._in_string:
            if self._escape:
                self._escape = False
            elif char == "\\":
                self._escape = True
            elif char == '"':
                self._in_string = False
                self._string_done(text, deltas)
            return
        call_level = self._depth == self._base + 1
        if char == '"':
            self._in_string = True
            self._string_start = self._pos
            if call_level and self._key is not None and self._value_start < 0:
                self._value_start = self._pos
        elif char in "{[":
            self._open_container(char, call_level)
        elif char in "}]":
            self._close_container(text, call_level, deltas)
        elif call_level and char == ":":
            self._expect_key = False
        elif call_level and char == ",":
            self._end_value(text, self._pos, deltas)
            self._expect_key = True
        elif call_level and not char.isspace() and self._key is not None and self._value_start < 0:
            self._value_start = self._pos  # a number, true, false or null

    def _open_container(self, char: str, call_level: bool) -> None:
        if self._depth == 0 and char == "[" and not self.calls:
            self._base = 1  # [{...}, {...}]: a list of calls
        elif self._depth == self._base and char == "{":
            self.calls.append(StreamedCall(self._next_index))
            self._next_index += 1
            self._expect_key = True
            self._key = None
        elif call_level and self._key is not None and self._value_start < 0:
            self._value_start = self._pos
            self._args_emitted = self._pos
        self._depth += 1

    def _close_container(self, text: str, call_level: bool, deltas: list[ToolCallDelta]) -> None:
        if call_level:  # the call object ends
            self._end_value(text, self._pos, deltas)
        self._depth = max(self._depth - 1, 0)
        if self._depth == self._base + 1 and self._key in ARGUMENT_KEYS:
            self._end_value(text, self._pos + 1, deltas)  # the arguments object/list ends

    def _string_done(self, text: str, deltas: list[ToolCallDelta]) -> None:
        if self._depth != self._base + 1:
            return
        literal = text[self._string_start : self._pos + 1]
        if self._expect_key:
            self._key = _decoded(literal)
            self._value_start = -1
        elif self._key == "name" and self.calls:
            call = self.calls[-1]
            call.name = _decoded(literal)
            self._open(call, deltas)
            self._key = None
        elif self._key in ARGUMENT_KEYS and self.calls:
            # Arguments sent as a JSON string: hand on the text it holds, once complete.
            decoded = _decoded(literal)
            if decoded is not None:
                self._hand_on(self.calls[-1], decoded, deltas)
            self._key = None

    def _end_value(self, text: str, end: int, deltas: list[ToolCallDelta]) -> None:
        if self._key in ARGUMENT_KEYS and self._value_start >= 0 and text[self._value_start] != '"':
            self._stream_arguments(text, end, deltas)
        self._key = None
        self._value_start = -1

    def _stream_arguments(self, text: str, end: int, deltas: list[ToolCallDelta]) -> None:
        """Hand on the arguments' raw text read so far (not a string value: see above)."""
        call = self._call
        if (
            call is None
            or self._key not in ARGUMENT_KEYS
            or self._value_start < 0
            or text[self._value_start] == '"'
        ):
            return
        start = max(self._args_emitted, self._value_start)
        if end > start:
            self._hand_on(call, text[start:end], deltas)
            self._args_emitted = end

    def _hand_on(self, call: StreamedCall, piece: str, deltas: list[ToolCallDelta]) -> None:
        call.arguments.append(piece)
        if call.opened:
            deltas.append(ToolCallDelta(call.index, piece))

    def _open(self, call: StreamedCall, deltas: list[ToolCallDelta]) -> None:
        """The name is known: the call's first piece, with any arguments read before it."""
        if call.name and not call.opened:
            call.opened = True
            deltas.append(ToolCallDelta(call.index, "".join(call.arguments), call.id, call.name))


def whole_call(index: int, call: ToolCall) -> ToolCallDelta:
    """A call streamed in one piece (formats the scanner does not follow)."""
    return ToolCallDelta(index, call.arguments, call.id, call.name)


def _decoded(literal: str) -> str | None:
    try:
        value = json.loads(literal)
    except ValueError:
        return None
    return value if isinstance(value, str) else None

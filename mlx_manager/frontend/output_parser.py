"""Splits a reply's text stream into content, reasoning and tool calls (on the asyncio side).

Protocol-neutral: it rewrites each GenerationEvent so that ``text`` holds only content,
``reasoning`` the model's thinking (``<think>...</think>`` and the like, markers from mlx-lm's
TokenizerWrapper), ``tool_calls`` each call once it is complete and ``tool_call_deltas`` the
calls piece by piece as they decode (frontend/tool_call_stream.py). Text that may be the start
of a marker is held back until it is known, as stop strings are. A call cut short (by
max_tokens, say) is still a call, with the arguments generated so far, once its name is known;
before that its markup is dropped: call markup never reaches the content. A finished call that
does not parse and whose name was never read is released as content rather than lost.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

from mlx_manager.frontend.tool_call_stream import JsonCallScanner, whole_call
from mlx_manager.models.tool_formats import HERMES, LLAMA3_JSON, ToolFormat, parse_calls
from mlx_manager.types import FinishReason, GenerationEvent, ToolCall, ToolCallDelta

# Call formats whose text is a JSON object per call, followed as it decodes.
_SCANNED_GRAMMARS = (HERMES, LLAMA3_JSON)


class _State(enum.Enum):
    CONTENT = "content"
    REASONING = "reasoning"
    TOOL = "tool"


@dataclass(slots=True)
class _Out:
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    deltas: list[ToolCallDelta] = field(default_factory=list)


class OutputParser:
    def __init__(
        self,
        tool_format: ToolFormat | None = None,
        think: tuple[str, str] | None = None,
        in_reasoning: bool = False,
    ) -> None:
        self._fmt = tool_format
        self._think = think
        self._state = _State.REASONING if in_reasoning and think else _State.CONTENT
        self._buf = ""
        self._held_space = ""  # whitespace after tool calls, dropped if nothing follows
        self._content_started = False
        self._made_calls = False
        self._after_reasoning = False  # drop the newlines that follow a thinking block
        self._scanner: JsonCallScanner | None = None  # the open call block's, if followed
        self._calls_made = 0  # index of the next call in the reply

    def feed(self, event: GenerationEvent) -> GenerationEvent:
        out = _Out()
        self._buf += event.text
        self._scan(out)
        if event.finished:
            self._flush(out, cut=event.finish_reason is FinishReason.LENGTH)
        reason = event.finish_reason
        if self._made_calls and reason is FinishReason.STOP:
            reason = FinishReason.TOOL_CALLS
        return dataclasses.replace(
            event,
            text="".join(out.content),
            reasoning="".join(out.reasoning),
            tool_calls=tuple(out.calls),
            tool_call_deltas=tuple(out.deltas),
            finish_reason=reason,
        )

    # --- scanning ---------------------------------------------------------------------------

    def _scan(self, out: _Out) -> None:
        while self._buf:
            if self._state is _State.CONTENT:
                progressed = self._scan_content(out)
            elif self._state is _State.REASONING:
                progressed = self._scan_reasoning(out)
            else:
                progressed = self._scan_tool(out)
            if not progressed:
                return

    def _markers(self) -> list[str]:
        markers = []
        if self._think:
            markers.append(self._think[0])
        if self._fmt is not None and self._fmt.start:
            markers.append(self._fmt.start)
        return markers

    def _scan_content(self, out: _Out) -> bool:
        if self._bare_json_call_starts():
            self._open_block()
            return True
        bare = self._fmt is not None and not self._fmt.start and not self._content_started
        if bare and not self._buf.strip():
            return False  # leading whitespace: wait to see whether a JSON call follows
        hits = [(self._buf.find(m), m) for m in self._markers()]
        found = [(i, m) for i, m in hits if i >= 0]
        if found:
            index, marker = min(found)
            self._emit_content(self._buf[:index], out)
            self._buf = self._buf[index + len(marker) :]
            if self._think is not None and marker == self._think[0]:
                self._state = _State.REASONING
            else:
                self._open_block()
            return True
        keep = _held_prefix(self._buf, self._markers())
        self._emit_content(self._buf[: len(self._buf) - keep], out)
        self._buf = self._buf[len(self._buf) - keep :]
        return False

    def _bare_json_call_starts(self) -> bool:
        fmt = self._fmt
        if fmt is None or fmt.start or self._content_started:
            return False
        return self._buf.lstrip().startswith(("{", "["))

    def _scan_reasoning(self, out: _Out) -> bool:
        assert self._think is not None
        end = self._think[1]
        index = self._buf.find(end)
        if index >= 0:
            out.reasoning.append(self._buf[:index])
            self._buf = self._buf[index + len(end) :]
            self._state = _State.CONTENT
            self._after_reasoning = True
            return True
        keep = _held_prefix(self._buf, [end])
        out.reasoning.append(self._buf[: len(self._buf) - keep])
        self._buf = self._buf[len(self._buf) - keep :]
        return False

    def _open_block(self) -> None:
        assert self._fmt is not None
        self._state = _State.TOOL
        scanned = self._fmt.grammar in _SCANNED_GRAMMARS
        self._scanner = JsonCallScanner(self._calls_made) if scanned else None

    def _scan_tool(self, out: _Out) -> bool:
        assert self._fmt is not None
        end = self._fmt.end
        index = self._buf.find(end) if end else -1
        if index < 0:  # a call is complete only at its end marker (or the reply's end)
            if self._scanner is not None:
                out.deltas += self._scanner.feed(self._buf)
            return False
        self._take_call(self._buf[:index], out)
        self._buf = self._buf[index + len(end) :]
        self._state = _State.CONTENT
        return True

    def _take_call(self, text: str, out: _Out, cut: bool = False) -> None:
        """The block's calls, with the ids and pieces already streamed; `cut`: the reply
        ended inside it."""
        assert self._fmt is not None
        scanner, self._scanner = self._scanner, None
        streamed = []
        if scanner is not None:
            out.deltas += scanner.feed(text)
            streamed = [c for c in scanner.calls if c.opened]
        try:
            calls = parse_calls(self._fmt, text)
        except ValueError:
            if streamed or cut:  # a call begun (or markup cut short): never markup as text
                self._add_calls([c.as_call() for c in streamed], out, streamed=len(streamed))
            else:
                self._emit_content(self._fmt.start + text, out)
            return
        known = [
            dataclasses.replace(call, id=streamed[i].id) if i < len(streamed) else call
            for i, call in enumerate(calls)
        ]
        for i, call in enumerate(known[: len(streamed)]):
            if not streamed[i].arguments and call.arguments:  # none seen: no arguments key
                out.deltas.append(ToolCallDelta(streamed[i].index, call.arguments))
        self._add_calls(known, out, streamed=len(streamed))

    def _add_calls(self, calls: list[ToolCall], out: _Out, streamed: int) -> None:
        """Record `calls`; those past the first `streamed` go out whole as one piece each."""
        for i, call in enumerate(calls):
            if i >= streamed:
                out.deltas.append(whole_call(self._calls_made + i, call))
        out.calls.extend(calls)
        self._calls_made += len(calls)
        self._made_calls = self._made_calls or bool(calls)

    def _emit_content(self, text: str, out: _Out) -> None:
        if self._after_reasoning:
            text = text.lstrip("\n")
            self._after_reasoning = not text
        if not text:
            return
        if self._made_calls and not (self._held_space + text).strip():
            self._held_space += text
            return
        out.content.append(self._held_space + text)
        self._held_space = ""
        self._content_started = self._content_started or bool(text.strip())

    def _flush(self, out: _Out, cut: bool = False) -> None:
        self._scan(out)
        rest, self._buf = self._buf, ""
        if self._state is _State.TOOL:
            # A call with an end marker that never came was cut short (whatever the reason).
            self._take_call(rest, out, cut=cut or bool(self._fmt and self._fmt.end))
        elif self._state is _State.REASONING:
            out.reasoning.append(rest)
        else:
            self._emit_content(rest, out)


def _held_prefix(text: str, markers: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a marker."""
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), best, -1):
            if marker.startswith(text[-size:]):
                best = size
                break
    return best

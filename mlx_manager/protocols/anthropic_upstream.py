"""Anthropic Messages spoken to an upstream (pure, no I/O): an internal request as the wire
body, and the upstream's stream events as `GenerationEvent`s.

The reverse of anthropic_convert. Decisions:
- Every system message goes into the top-level ``system`` (joined, in order): the Messages
  API has no system role inside ``messages``.
- ``tool`` messages become ``tool_result`` blocks of a user turn; consecutive turns of one
  role are merged into one (the API wants user and assistant to alternate).
- Images: ``data:`` URLs become base64 sources, http(s) URLs url sources.
- ``temperature`` is clamped to Anthropic's [0, 1]; ``seed``, penalties and ``min_p`` have no
  Anthropic counterpart and are dropped; ``max_tokens`` (required there) defaults to the
  provider's ``default_max_tokens``.
- ``enable_thinking`` (Anthropic's own ``thinking``, or OpenAI's ``reasoning_effort``) becomes
  ``thinking`` enabled with half of max_tokens as budget (at least Anthropic's 1024; left off
  when max_tokens is too small for that), or disabled.
- A JSON schema (response_format) becomes ``output_config.format``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.errors import ErrorInfo, InvalidRequest
from mlx_manager.protocols.openai_upstream import check_chat
from mlx_manager.protocols.upstream_errors import error_fields, status_of_type, upstream_error
from mlx_manager.types import (
    ChatMessage,
    FinishReason,
    GenerateRequest,
    GenerationEvent,
    ImageRef,
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    Usage,
)

MIN_THINKING_BUDGET = 1024
_STOP = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "refusal": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
}


def messages_body(request: GenerateRequest, model: str, default_max_tokens: int) -> dict[str, Any]:
    """The /v1/messages body for `request`, asking `model`: streamed unless the caller asked
    for the whole answer (request.stream)."""
    messages = check_chat(request)
    s = request.sampling
    max_tokens = s.max_tokens or default_max_tokens
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": _turns(messages),
        "stream": request.stream,
        "temperature": min(max(s.temperature, 0.0), 1.0),
    }
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    if system:
        body["system"] = system
    if s.top_p != 1.0:
        body["top_p"] = s.top_p
    if s.top_k:
        body["top_k"] = s.top_k
    if s.stop:
        body["stop_sequences"] = list(s.stop)
    if request.tools:
        body["tools"] = [
            {
                "name": t.name,
                "description": t.description,
                "input_schema": dict(t.parameters) or {"type": "object", "properties": {}},
            }
            for t in request.tools
        ]
        body["tool_choice"] = _tool_choice(request)
    fmt = request.response_format
    if fmt is not None:
        schema = dict(fmt.schema) if fmt.schema is not None else {"type": "object"}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    thinking = _thinking(request, max_tokens)
    if thinking is not None:
        body["thinking"] = thinking
    return body


def _tool_choice(request: GenerateRequest) -> dict[str, Any]:
    choice = request.tool_choice
    modes: dict[ToolChoiceMode, dict[str, Any]] = {
        ToolChoiceMode.AUTO: {"type": "auto"},
        ToolChoiceMode.NONE: {"type": "none"},
        ToolChoiceMode.REQUIRED: {"type": "any"},
        ToolChoiceMode.NAMED: {"type": "tool", "name": choice.name},
    }
    out = dict(modes[choice.mode])
    if request.parallel_tool_calls is False and choice.mode is not ToolChoiceMode.NONE:
        out["disable_parallel_tool_use"] = True
    return out


def _thinking(request: GenerateRequest, max_tokens: int) -> dict[str, Any] | None:
    enabled = dict(request.template_kwargs).get("enable_thinking")
    if enabled is False:
        return {"type": "disabled"}
    budget = max(max_tokens // 2, MIN_THINKING_BUDGET)
    if enabled is True and budget < max_tokens:
        return {"type": "enabled", "budget_tokens": budget}
    return None


def _turns(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
        ]
    blocks: list[dict[str, Any]] = [
        _image_block(p) if isinstance(p, ImageRef) else {"type": "text", "text": p}
        for p in message.parts
        if not isinstance(p, str) or p
    ]
    if not message.parts and message.content:
        blocks.append({"type": "text", "text": message.content})
    blocks.extend(
        {"type": "tool_use", "id": c.id, "name": c.name, "input": _arguments(c)}
        for c in message.tool_calls
    )
    return blocks


def _arguments(call: ToolCall) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments or "{}")
    except ValueError:
        raise InvalidRequest(
            f"tool call {call.id!r} has arguments that are not JSON", param="messages"
        ) from None
    return value if isinstance(value, dict) else {}


def _image_block(image: ImageRef) -> dict[str, Any]:
    url = image.url
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64":
            raise InvalidRequest(f"{image.param}: data URLs must be base64", param=image.param)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


# --- replies -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Block:
    kind: str
    call_index: int = -1
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class MessageStreamDecoder:
    """Messages stream events (`type` + parsed data) -> GenerationEvents."""

    def __init__(self, request_id: str, provider: str) -> None:
        self._request_id = request_id
        self._provider = provider
        self._blocks: dict[int, _Block] = {}
        self._calls: list[_Block] = []
        self._stop: str | None = None
        self._stop_sequence: str | None = None
        self._input = self._cached = self._output = 0
        self.started = False
        self.finished = False

    @property
    def prompt_tokens(self) -> int:
        return self._input

    def feed(self, data: dict[str, Any]) -> GenerationEvent | None:
        kind = data.get("type")
        if kind == "message_start":
            self.started = True
            self._usage(data.get("message", {}).get("usage") or {})
        elif kind == "content_block_start":
            return self._block_start(int(data.get("index", 0)), data.get("content_block") or {})
        elif kind == "content_block_delta":
            return self._delta(int(data.get("index", 0)), data.get("delta") or {})
        elif kind == "message_delta":
            delta = data.get("delta") or {}
            self._stop = delta.get("stop_reason") or self._stop
            self._stop_sequence = delta.get("stop_sequence") or self._stop_sequence
            self._usage(data.get("usage") or {})
        elif kind == "message_stop":
            self.finished = True
            return self.end()
        elif kind == "error":
            error_type, _ = error_fields(data)
            error = upstream_error(self._provider, status_of_type(error_type), data)
            self.finished = True
            return GenerationEvent(
                self._request_id, finish_reason=FinishReason.ERROR, error=ErrorInfo.of(error)
            )
        return None  # ping, content_block_stop, unknown future events

    def _usage(self, usage: dict[str, Any]) -> None:
        if "input_tokens" in usage or "cache_read_input_tokens" in usage:
            cached = int(usage.get("cache_read_input_tokens") or 0)
            created = int(usage.get("cache_creation_input_tokens") or 0)
            self._input = int(usage.get("input_tokens") or 0) + cached + created
            self._cached = cached
        if "output_tokens" in usage:
            self._output = int(usage["output_tokens"] or 0)

    def _block_start(self, index: int, block: dict[str, Any]) -> GenerationEvent | None:
        entry = self._blocks[index] = _Block(str(block.get("type")))
        if entry.kind == "text" and block.get("text"):
            return GenerationEvent(self._request_id, text=block["text"])
        if entry.kind != "tool_use":
            return None
        entry.call_index, entry.id, entry.name = len(self._calls), block["id"], block["name"]
        self._calls.append(entry)
        delta = ToolCallDelta(entry.call_index, "", entry.id, entry.name)
        return GenerationEvent(self._request_id, tool_call_deltas=(delta,))

    def _delta(self, index: int, delta: dict[str, Any]) -> GenerationEvent | None:
        kind = delta.get("type")
        if kind == "text_delta":
            return GenerationEvent(self._request_id, text=delta.get("text") or "")
        if kind == "thinking_delta":
            return GenerationEvent(self._request_id, reasoning=delta.get("thinking") or "")
        block = self._blocks.get(index)
        if kind == "input_json_delta" and block is not None and block.kind == "tool_use":
            piece = delta.get("partial_json") or ""
            block.arguments.append(piece)
            call = ToolCallDelta(block.call_index, piece)
            return GenerationEvent(self._request_id, tool_call_deltas=(call,))
        return None  # signature_delta, citations

    def whole(self, message: Any) -> list[GenerationEvent]:
        """A non-streamed answer (a whole Message) as the events its stream would give: it is
        fed through the same steps, so both map stop reasons, usage and tool calls alike."""
        if not isinstance(message, dict) or message.get("type") == "error":
            event = self.feed(message if isinstance(message, dict) else {"type": "error"})
            return [event] if event is not None else [self.end()]
        usage = message.get("usage") or {}
        self.feed({"type": "message_start", "message": {"usage": usage}})
        events: list[GenerationEvent | None] = []
        for index, block in enumerate(message.get("content") or ()):
            events += self._whole_block(index, block)
        stop = {k: message.get(k) for k in ("stop_reason", "stop_sequence")}
        self.feed({"type": "message_delta", "delta": stop, "usage": usage})
        return [e for e in events if e is not None] + [self.end()]

    def _whole_block(self, index: int, block: dict[str, Any]) -> list[GenerationEvent | None]:
        kind = block.get("type")
        if kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            delta = {"type": "input_json_delta", "partial_json": arguments}
            return [self._block_start(index, block), self._delta(index, delta)]
        if kind == "thinking":
            thinking = {"type": "thinking_delta", "thinking": block.get("thinking") or ""}
            return [self._block_start(index, {"type": "thinking"}), self._delta(index, thinking)]
        return [self._block_start(index, block)]  # text (its text at once); others: nothing

    def end(self) -> GenerationEvent:
        calls = tuple(ToolCall(c.id, c.name, "".join(c.arguments) or "{}") for c in self._calls)
        reason = _STOP.get(self._stop or "end_turn", FinishReason.STOP)
        return GenerationEvent(
            self._request_id,
            finish_reason=reason,
            usage=Usage(self._input, self._output, self._cached),
            tool_calls=calls,
            stop_sequence=self._stop_sequence if self._stop == "stop_sequence" else None,
        )

"""OpenAI chat completions spoken to an upstream (pure, no I/O): an internal request as the
wire body, and the upstream's streamed chunks as `GenerationEvent`s.

The reverse of openai_convert (wire -> internal) and openai_reply (events -> wire). Only chat
requests go upstream: a raw prompt (/v1/completions), echo and logprobs are 400s.
`dialect="openai"` speaks to OpenAI itself (max_completion_tokens, reasoning_effort, no
sampling extensions); `"openai_compatible"` to vLLM, Ollama or another MLX Manager
(max_tokens, top_k/min_p/repetition_penalty, chat_template_kwargs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mlx_manager.errors import ErrorInfo, UnsupportedParameter
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

Dialect = Literal["openai", "openai_compatible"]

_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.STOP,
}


def check_chat(request: GenerateRequest) -> tuple[ChatMessage, ...]:
    """The request's messages; 400 for what an upstream chat API cannot be asked."""
    if request.messages is None:
        raise UnsupportedParameter(
            "this model is served by an upstream chat API: send messages, not a prompt",
            param="prompt",
        )
    if request.echo:
        raise UnsupportedParameter("echo is not supported by upstream models", param="echo")
    if request.sampling.logprobs:
        raise UnsupportedParameter(
            "logprobs are not supported by upstream models", param="logprobs"
        )
    return request.messages


def chat_body(request: GenerateRequest, model: str, dialect: Dialect) -> dict[str, Any]:
    """The /chat/completions body for `request`, asking `model`: streamed (usage included)
    unless the caller asked for the whole answer (request.stream)."""
    messages = check_chat(request)
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(m) for m in messages],
        "stream": request.stream,
        **_sampling(request, dialect),
    }
    if request.stream:
        body["stream_options"] = {"include_usage": True}
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters) or {"type": "object", "properties": {}},
                },
            }
            for t in request.tools
        ]
        body["tool_choice"] = _tool_choice(request)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    fmt = request.response_format
    if fmt is not None:
        body["response_format"] = (
            {"type": "json_object"}
            if fmt.schema is None
            else {
                "type": "json_schema",
                "json_schema": {"name": fmt.name or "response", "schema": dict(fmt.schema)},
            }
        )
    body.update(_reasoning(request, dialect))
    return body


def _sampling(request: GenerateRequest, dialect: Dialect) -> dict[str, Any]:
    s = request.sampling
    out: dict[str, Any] = {"temperature": s.temperature}
    if s.max_tokens is not None:
        out["max_completion_tokens" if dialect == "openai" else "max_tokens"] = s.max_tokens
    optional: dict[str, tuple[Any, Any]] = {
        "top_p": (s.top_p, 1.0),
        "seed": (s.seed, None),
        "stop": (list(s.stop), []),
        "presence_penalty": (s.presence_penalty, 0.0),
        "frequency_penalty": (s.frequency_penalty, 0.0),
    }
    if dialect == "openai_compatible":  # vLLM's sampling extensions, which MLX Manager takes
        optional |= {
            "top_k": (s.top_k, 0),
            "min_p": (s.min_p, 0.0),
            "repetition_penalty": (s.repetition_penalty, 1.0),
        }
    out.update({name: value for name, (value, default) in optional.items() if value != default})
    return out


def _reasoning(request: GenerateRequest, dialect: Dialect) -> dict[str, Any]:
    kwargs = dict(request.template_kwargs)
    if not kwargs:
        return {}
    if dialect == "openai_compatible":
        return {"chat_template_kwargs": kwargs}
    if "reasoning_effort" in kwargs:
        return {"reasoning_effort": kwargs["reasoning_effort"]}
    return {"reasoning_effort": "minimal"} if kwargs.get("enable_thinking") is False else {}


def _tool_choice(request: GenerateRequest) -> Any:
    choice = request.tool_choice
    if choice.mode is ToolChoiceMode.NAMED:
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode.value  # auto, none, required


def _message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role, "content": _content(message)}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in message.tool_calls
        ]
    if message.name:
        out["name"] = message.name
    return out


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    if not message.parts:
        return message.content
    return [
        {"type": "image_url", "image_url": {"url": p.url}}
        if isinstance(p, ImageRef)
        else {"type": "text", "text": p}
        for p in message.parts
    ]


# --- replies -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class ChatStreamDecoder:
    """Streamed chat chunks (parsed `data:` JSON) -> GenerationEvents; `end()` gives the last
    event once the stream says [DONE] (the usage chunk comes after the finish reason)."""

    def __init__(self, request_id: str, provider: str) -> None:
        self._request_id = request_id
        self._provider = provider
        self._calls: dict[int, _Call] = {}
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self.completion_pieces = 0
        self.started = True  # nothing comes before the output

    @property
    def prompt_tokens(self) -> int:
        """Known at the end only (the usage chunk)."""
        return self._usage.prompt_tokens if self._usage is not None else 0

    def feed(self, chunk: dict[str, Any]) -> GenerationEvent | None:
        """The event a chunk carries (None: nothing to pass on yet)."""
        if "error" in chunk:
            kind, _ = error_fields(chunk)
            error = upstream_error(self._provider, status_of_type(kind), chunk)
            return GenerationEvent(
                self._request_id, finish_reason=FinishReason.ERROR, error=ErrorInfo.of(error)
            )
        if chunk.get("usage"):
            self._usage = usage_of(chunk["usage"])
        choices = chunk.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self._finish = _FINISH.get(choice["finish_reason"], FinishReason.STOP)
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        deltas = tuple(self._call_delta(d) for d in delta.get("tool_calls") or ())
        if not (text or reasoning or deltas):
            return None
        self.completion_pieces += 1
        return GenerationEvent(
            self._request_id, text=text, reasoning=reasoning, tool_call_deltas=deltas
        )

    def whole(self, answer: Any) -> list[GenerationEvent]:
        """A non-streamed answer (a whole chat.completion) as the events its stream would
        give: its message is fed as one delta, so both map finish reasons, usage and tool
        calls alike."""
        if not isinstance(answer, dict) or "error" in answer:
            event = self.feed(answer if isinstance(answer, dict) else {"error": {}})
            return [event] if event is not None else [self.end()]
        choices = [
            {"delta": c.get("message") or {}, "finish_reason": c.get("finish_reason")}
            for c in (answer.get("choices") or ())[:1]
            if isinstance(c, dict)
        ]
        event = self.feed({"choices": choices, "usage": answer.get("usage")})
        return [event, self.end()] if event is not None else [self.end()]

    def _call_delta(self, piece: dict[str, Any]) -> ToolCallDelta:
        index = int(piece.get("index", len(self._calls)))
        function = piece.get("function") or {}
        arguments = function.get("arguments") or ""
        call = self._calls.get(index)
        if call is None:
            call_id = piece.get("id") or f"call_{self._request_id}_{index}"
            call = self._calls[index] = _Call(call_id, function.get("name") or "")
            call.arguments.append(arguments)
            return ToolCallDelta(index, arguments, call.id, call.name)
        call.arguments.append(arguments)
        return ToolCallDelta(index, arguments)

    @property
    def finished(self) -> bool:
        return self._finish is not None

    def end(self) -> GenerationEvent:
        """The last event: finish reason, whole tool calls, usage."""
        calls = tuple(
            ToolCall(c.id, c.name, "".join(c.arguments)) for _, c in sorted(self._calls.items())
        )
        reason = self._finish or FinishReason.STOP
        if calls and reason is FinishReason.STOP:
            reason = FinishReason.TOOL_CALLS
        usage = self._usage or Usage(0, self.completion_pieces)
        return GenerationEvent(
            self._request_id, finish_reason=reason, usage=usage, tool_calls=calls
        )


def usage_of(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(details.get("cached_tokens") or 0),
    )

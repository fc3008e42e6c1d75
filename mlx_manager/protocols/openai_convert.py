"""Pure converters between OpenAI wire JSON and internal types (no I/O, no engine)."""

from __future__ import annotations

import dataclasses
from typing import Any

from mlx_manager.errors import InvalidRequest, UnsupportedParameter
from mlx_manager.protocols.openai_schemas import (
    ChatCompletionRequest,
    ChatMessageIn,
    CompletionRequest,
    ImageUrlPart,
    NamedToolChoice,
    ResponseFormat,
    TextPart,
    _SamplingFields,
)
from mlx_manager.protocols.stops import OPENAI_MAX_STOPS, checked_stops
from mlx_manager.protocols.template_kwargs import effort_kwargs, template_kwargs
from mlx_manager.types import (
    ChatMessage,
    ContentPiece,
    FinishReason,
    GenerateRequest,
    ImageRef,
    SamplingParams,
    TokenLogprob,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
    Usage,
)
from mlx_manager.types import ResponseFormat as InternalResponseFormat

_SEED_MODULUS = 2**63
_PRIORITY_LEVELS = {"high": -1, "normal": 0, "low": 1}


# --- requests ----------------------------------------------------------------------------


def chat_request_to_internal(body: ChatCompletionRequest, request_id: str) -> GenerateRequest:
    if body.top_logprobs and not body.logprobs:
        raise InvalidRequest("top_logprobs requires logprobs to be true", param="top_logprobs")
    max_tokens = body.max_completion_tokens or body.max_tokens
    sampling = _sampling(body, max_tokens, bool(body.logprobs), body.top_logprobs or 0)
    messages = tuple(_message(m, i) for i, m in enumerate(body.messages))
    tools = tuple(
        ToolSpec(t.function.name, t.function.description or "", t.function.parameters or {})
        for t in body.tools or ()
    )
    return GenerateRequest(
        request_id,
        body.model,
        sampling,
        messages=messages,
        priority=priority_value(body.priority),
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice, tools),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body.response_format),
        # The client's own chat_template_kwargs win over what reasoning_effort sets.
        template_kwargs=template_kwargs(
            {**effort_kwargs(body.reasoning_effort), **(body.chat_template_kwargs or {})}
        ),
        stream=bool(body.stream),
    )


def completion_request_to_internal(body: CompletionRequest, request_id: str) -> GenerateRequest:
    if body.suffix:
        raise UnsupportedParameter("suffix is not supported", param="suffix")
    if body.best_of not in (None, 1):
        raise UnsupportedParameter("best_of > 1 is not supported", param="best_of")
    logprobs = body.logprobs is not None
    sampling = _sampling(body, body.max_tokens, logprobs, body.logprobs or 0)
    prompt = body.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], list | str):
        if len(prompt) != 1:
            raise UnsupportedParameter(
                "only one prompt per request is supported; send several requests",
                param="prompt",
            )
        prompt = prompt[0]  # type: ignore[assignment]
    prompt_text: str | None = None
    tokens: tuple[int, ...] | None = None
    if isinstance(prompt, str):
        prompt_text = prompt
    elif not prompt:
        raise InvalidRequest("prompt must not be empty", param="prompt")
    else:
        tokens = tuple(int(t) for t in prompt)  # type: ignore[arg-type]
    if body.echo and prompt_text is None:
        raise UnsupportedParameter("echo is supported for text prompts only", param="echo")
    return GenerateRequest(
        request_id,
        body.model,
        sampling,
        prompt_text=prompt_text,
        prompt_tokens=tokens,
        echo=bool(body.echo),
        priority=priority_value(body.priority),
    )


def priority_value(priority: int | str | None) -> int:
    if priority is None:
        return 0
    if isinstance(priority, str):
        return _PRIORITY_LEVELS[priority]
    return priority


def _tool_choice(choice: str | NamedToolChoice | None, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    if choice is None or choice == "auto":
        return ToolChoice()
    if choice == "none":
        return ToolChoice(ToolChoiceMode.NONE)
    if not tools:
        raise InvalidRequest("tool_choice requires tools", param="tool_choice")
    if choice == "required":
        return ToolChoice(ToolChoiceMode.REQUIRED)
    assert isinstance(choice, NamedToolChoice)
    name = choice.function.name
    if not any(t.name == name for t in tools):
        raise InvalidRequest(
            f"tool_choice names function {name!r}, which is not in tools",
            param="tool_choice.function.name",
        )
    return ToolChoice(ToolChoiceMode.NAMED, name)


def _response_format(fmt: ResponseFormat | None) -> InternalResponseFormat | None:
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return InternalResponseFormat()
    if fmt.json_schema is None:
        raise InvalidRequest(
            "response_format json_schema requires 'json_schema'", param="response_format"
        )
    return InternalResponseFormat(fmt.json_schema.schema_ or {}, fmt.json_schema.name)


def _sampling(
    body: _SamplingFields, max_tokens: int | None, logprobs: bool, top_logprobs: int
) -> SamplingParams:
    if body.n not in (None, 1):
        raise UnsupportedParameter("n > 1 is not supported; send several requests", param="n")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=max(body.top_k or 0, 0),
        min_p=body.min_p or 0.0,
        seed=None if body.seed is None else body.seed % _SEED_MODULUS,
        stop=_stops(body.stop),
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        repetition_penalty=body.repetition_penalty or 1.0,
        logit_bias=_logit_bias(body.logit_bias),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    return checked_stops(stops, "stop", OPENAI_MAX_STOPS)


def _logit_bias(bias: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
    pairs = []
    for key, value in (bias or {}).items():
        if not key.lstrip("-").isdigit() or int(key) < 0:
            raise InvalidRequest(f"logit_bias key {key!r} is not a token id", param="logit_bias")
        if not -100.0 <= value <= 100.0:
            raise InvalidRequest("logit_bias values must be in [-100, 100]", param="logit_bias")
        pairs.append((int(key), float(value)))
    return tuple(pairs)


def _message(message: ChatMessageIn, index: int) -> ChatMessage:
    where = f"messages[{index}]"
    if message.role == "function" or message.function_call:
        raise UnsupportedParameter(
            "legacy function messages are not supported; use tools and tool messages",
            param=where,
        )
    if message.role == "tool":
        if not message.tool_call_id:
            raise InvalidRequest(
                f"{where}.tool_call_id is required for role 'tool'", param=f"{where}.tool_call_id"
            )
        text = _text(message, where)
        return ChatMessage("tool", text, tool_call_id=message.tool_call_id, name=message.name)
    calls = tuple(
        ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()
    )
    if calls and message.role != "assistant":
        raise InvalidRequest(f"{where}: only assistant messages carry tool_calls", param=where)
    return dataclasses.replace(_content_message(message, where), tool_calls=calls)


def _text(message: ChatMessageIn, where: str) -> str:
    return _content_message(message, where).content


def _content_message(message: ChatMessageIn, where: str) -> ChatMessage:
    content = message.content
    if content is None:
        if message.role not in ("assistant", "tool"):
            raise InvalidRequest(
                f"{where}.content is required for role {message.role!r}", param=f"{where}.content"
            )
        return ChatMessage(message.role, "")
    if isinstance(content, str):
        return ChatMessage(message.role, content)
    pieces: list[ContentPiece] = []
    for j, part in enumerate(content):
        path = f"{where}.content[{j}]"
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, ImageUrlPart) and message.role == "user":
            pieces.append(_image_ref(part, path))
        else:
            raise InvalidRequest(
                f"{path} is a {part.type!r} part, which {message.role} messages cannot carry "
                "here (text parts, and image_url parts in user messages for vision models)",
                param=path,
            )
    text = "\n".join(p for p in pieces if isinstance(p, str))
    has_images = any(isinstance(p, ImageRef) for p in pieces)
    return ChatMessage(message.role, text, parts=tuple(pieces) if has_images else ())


def _image_ref(part: ImageUrlPart, path: str) -> ImageRef:
    image_url = part.image_url
    unknown = sorted(set(image_url) - {"url", "detail"})
    if unknown:
        raise UnsupportedParameter(
            f"{path}.image_url.{unknown[0]} is not supported", param=f"{path}.image_url"
        )
    url = image_url.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest(
            f"{path}.image_url.url must be a URL string", param=f"{path}.image_url"
        )
    # `detail` is a hint; images are always processed at the model's own resolution.
    if image_url.get("detail", "auto") not in ("auto", "low", "high"):
        raise InvalidRequest(
            f"{path}.image_url.detail must be 'auto', 'low' or 'high'",
            param=f"{path}.image_url.detail",
        )
    return ImageRef(url, f"{path}.image_url")


# --- responses ---------------------------------------------------------------------------


def finish_reason_value(reason: FinishReason | None) -> str | None:
    if reason is None:
        return None
    if reason is FinishReason.TOOL_CALLS:
        return "tool_calls"
    return "length" if reason is FinishReason.LENGTH else "stop"


def tool_call_dict(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def assistant_message(
    text: str, reasoning: str = "", calls: tuple[ToolCall, ...] | list[ToolCall] = ()
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
    }
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [tool_call_dict(c) for c in calls]
    return message


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _token_entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def chat_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {
                **_token_entry(e.token, e.logprob),
                "top_logprobs": [_token_entry(t, lp) for t, _, lp in e.top],
            }
            for e in entries
        ],
        "refusal": None,
    }


def completion_logprobs(entries: list[TokenLogprob], text_offset: int) -> dict[str, Any]:
    offsets = []
    for entry in entries:
        offsets.append(text_offset)
        text_offset += len(entry.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{t: lp for t, _, lp in e.top} for e in entries],
        "text_offset": offsets,
    }


def chat_completion(
    completion_id: str,
    model: str,
    created: int,
    text: str,
    reason: FinishReason | None,
    usage: Usage,
    logprobs: list[TokenLogprob] | None,
    reasoning: str = "",
    calls: tuple[ToolCall, ...] | list[ToolCall] = (),
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": assistant_message(text, reasoning, calls),
                "logprobs": chat_logprobs(logprobs) if logprobs is not None else None,
                "finish_reason": finish_reason_value(reason),
            }
        ],
        "usage": usage_dict(usage),
        "system_fingerprint": None,
    }


def chat_chunk(
    completion_id: str,
    model: str,
    created: int,
    delta: dict[str, Any],
    reason: FinishReason | None = None,
    logprobs: list[TokenLogprob] | None = None,
    with_usage_field: bool = False,
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": chat_logprobs(logprobs) if logprobs is not None else None,
                "finish_reason": finish_reason_value(reason),
            }
        ],
        "system_fingerprint": None,
    }
    if with_usage_field:
        chunk["usage"] = None
    return chunk


def chat_usage_chunk(completion_id: str, model: str, created: int, usage: Usage) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_dict(usage),
        "system_fingerprint": None,
    }


def text_completion(
    completion_id: str,
    model: str,
    created: int,
    text: str,
    reason: FinishReason | None,
    usage: Usage | None,
    logprobs: dict[str, Any] | None,
    object_usage: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": finish_reason_value(reason),
            }
        ],
        "system_fingerprint": None,
    }
    if object_usage:
        body["usage"] = usage_dict(usage) if usage is not None else None
    return body


def model_card(model_id: str, created: int, context_length: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "mlx-manager",
        "context_length": context_length,
        "max_model_len": context_length,
        **extra,
    }

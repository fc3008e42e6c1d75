"""Pure converters between Anthropic Messages wire JSON and internal types (no I/O, no engine).

A peer of openai_convert over the same internal types. Decisions:
- A ``system`` message inside ``messages`` stays a system turn where it is (the family
  adapter renders or folds it); the top-level ``system`` comes first.
- ``context_management`` edits change nothing: thinking is never replayed into the prompt,
  and tool-use clearing is not applied (reported as ignored; see field_policy).
- ``tool_result`` blocks become ``tool`` messages (before the user text that follows them),
  ``tool_use`` blocks the assistant's tool calls, ``thinking`` blocks are not fed back.
- ``tool_choice`` any -> required, tool -> named; ``disable_parallel_tool_use`` -> one call.
- Usage follows Anthropic: ``input_tokens`` excludes prompt tokens served from the prefix cache
  (reported as ``cache_read_input_tokens``).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from mlx_manager.errors import InvalidRequest, UnsupportedParameter
from mlx_manager.protocols.anthropic_schemas import (
    ContentBlock,
    ImageBlock,
    MessageIn,
    MessagesRequest,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    _PromptFields,
)
from mlx_manager.protocols.stops import ANTHROPIC_MAX_STOPS, checked_stops
from mlx_manager.protocols.template_kwargs import thinking_kwargs
from mlx_manager.types import (
    ChatMessage,
    ContentPiece,
    FinishReason,
    GenerateRequest,
    ImageRef,
    ResponseFormat,
    SamplingParams,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
    Usage,
)

_SKIPPED_BLOCKS = ("thinking", "redacted_thinking")


# --- requests ----------------------------------------------------------------------------


def messages_request_to_internal(body: MessagesRequest, request_id: str) -> GenerateRequest:
    stops = checked_stops(body.stop_sequences or (), "stop_sequences", ANTHROPIC_MAX_STOPS)
    sampling = SamplingParams(
        max_tokens=body.max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        stop=stops,
    )
    internal = prompt_to_internal(body, request_id, sampling)
    output = body.output_config
    fmt = None if output is None or output.format is None else ResponseFormat(output.format.schema_)
    return dataclasses.replace(internal, response_format=fmt, stream=bool(body.stream))


def prompt_to_internal(
    body: _PromptFields, request_id: str, sampling: SamplingParams | None = None
) -> GenerateRequest:
    """The prompt part of a request (also what count_tokens counts)."""
    tools = tuple(ToolSpec(t.name, t.description or "", t.input_schema) for t in body.tools or ())
    choice, parallel = _tool_choice(body, tools)
    return GenerateRequest(
        request_id,
        body.model,
        sampling or SamplingParams(),
        messages=_messages(body),
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        template_kwargs=thinking_kwargs(body.thinking.type if body.thinking else None),
    )


def _tool_choice(
    body: _PromptFields, tools: tuple[ToolSpec, ...]
) -> tuple[ToolChoice, bool | None]:
    choice = body.tool_choice
    if choice is None:
        return ToolChoice(), None
    parallel = False if choice.disable_parallel_tool_use else None
    if choice.type in ("any", "tool") and not tools:
        raise InvalidRequest(f"tool_choice {choice.type!r} requires tools", param="tool_choice")
    if choice.type == "any":
        return ToolChoice(ToolChoiceMode.REQUIRED), parallel
    if choice.type == "tool":
        if not any(t.name == choice.name for t in tools):
            raise InvalidRequest(
                f"tool_choice names tool {choice.name!r}, which is not in tools",
                param="tool_choice.name",
            )
        return ToolChoice(ToolChoiceMode.NAMED, choice.name), parallel
    mode = ToolChoiceMode.NONE if choice.type == "none" else ToolChoiceMode.AUTO
    return ToolChoice(mode), parallel


def _messages(body: _PromptFields) -> tuple[ChatMessage, ...]:
    out: list[ChatMessage] = []
    system = body.system
    if isinstance(system, list):
        system = "\n".join(block.text for block in system)
    if system:
        out.append(ChatMessage("system", system))
    last = len(body.messages) - 1
    for index, message in enumerate(body.messages):
        if not message.content and not (index == last and message.role == "assistant"):
            raise _empty_content(index)
        out.extend(_message(message, f"messages[{index}]"))
    return tuple(out)


def _system_text(blocks: list[ContentBlock], where: str) -> str:
    """A mid-conversation system message: text blocks only (rendered as the family folds
    system text: in place where the template allows, else into the next user turn)."""
    for j, block in enumerate(blocks):
        if not isinstance(block, TextBlock):
            raise InvalidRequest(
                f"{where}.content[{j}] is a {block.type} block; system messages hold text only",
                param=f"{where}.content[{j}]",
            )
    return "\n".join(block.text for block in blocks if isinstance(block, TextBlock))


def _empty_content(index: int) -> InvalidRequest:
    """Anthropic's own 400 (and its words): only a final assistant prefill may be empty; an
    empty turn would otherwise vanish from the prompt, or leave none to render."""
    return InvalidRequest(
        f"messages.{index}: all messages must have non-empty content except for the optional "
        "final assistant message",
        param=f"messages.{index}.content",
        code="invalid_value",
    )


def _message(message: MessageIn, where: str) -> list[ChatMessage]:
    if isinstance(message.content, str):
        return [ChatMessage(message.role, message.content)]
    if message.role == "system":
        return [ChatMessage("system", _system_text(message.content, where))]
    pieces: list[ContentPiece] = []
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []
    for j, block in enumerate(message.content):
        path = f"{where}.content[{j}]"
        if isinstance(block, TextBlock):
            pieces.append(block.text)
        elif isinstance(block, ImageBlock) and message.role == "user":
            pieces.append(_image_ref(block, path))
        elif isinstance(block, ToolUseBlock):
            calls.append(ToolCall(block.id, block.name, json.dumps(block.input)))
        elif isinstance(block, ToolResultBlock):
            results.append(
                ChatMessage("tool", _result_text(block, path), tool_call_id=block.tool_use_id)
            )
        elif block.type not in _SKIPPED_BLOCKS:
            raise _unsupported_block(block.type, path)
    if (calls and message.role != "assistant") or (results and message.role != "user"):
        raise InvalidRequest(f"{where} has blocks its role cannot hold", param=where)
    texts = [p for p in pieces if isinstance(p, str)]
    parts = tuple(pieces) if len(texts) < len(pieces) else ()  # only when there are images
    tail = (
        [ChatMessage(message.role, "\n".join(texts), tuple(calls), parts=parts)]
        if pieces or calls
        else []
    )
    return results + tail


def _image_ref(block: ImageBlock, path: str) -> ImageRef:
    """An image block's source as a URL: base64 sources become ``data:`` URLs."""
    source = block.source
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str):
            raise InvalidRequest(
                f"{path}.source needs string media_type and data", param=f"{path}.source"
            )
        return ImageRef(f"data:{media_type};base64,{data}", f"{path}.source")
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f"{path}.source.url must be a URL string", param=f"{path}.source")
        return ImageRef(url, f"{path}.source")
    raise UnsupportedParameter(
        f"{path}.source.type {kind!r} is not supported (base64 and url are)",
        param=f"{path}.source.type",
    )


def _result_text(block: ToolResultBlock, path: str) -> str:
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        for part in content:
            if isinstance(part, ImageBlock):
                raise _unsupported_block("image", f"{path}.content")
        text = "\n".join(part.text for part in content if isinstance(part, TextBlock))
    return f"Error: {text}" if block.is_error else text


def _unsupported_block(kind: str, path: str) -> InvalidRequest:
    if kind == "image":
        return InvalidRequest(
            f"{path} is an image block; images are accepted in user message content only",
            param=path,
        )
    return UnsupportedParameter(f"{path}: {kind} blocks are not supported", param=path)


# --- responses ---------------------------------------------------------------------------


def stop_reason(reason: FinishReason | None, stop_sequence: str | None) -> str | None:
    if reason is None:
        return None
    if reason is FinishReason.LENGTH:
        return "max_tokens"
    if reason is FinishReason.TOOL_CALLS:
        return "tool_use"
    return "stop_sequence" if stop_sequence else "end_turn"


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens - usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def tool_use_block(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call)}


def _input(call: ToolCall) -> dict[str, Any]:
    try:
        value = json.loads(call.arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def message(
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    reason: FinishReason | None,
    stop_sequence: str | None,
    usage: Usage,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(reason, stop_sequence),
        "stop_sequence": stop_sequence,
        "usage": usage_dict(usage),
    }


def content_blocks(text: str, reasoning: str, calls: list[ToolCall]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reasoning:
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    if text or not calls:
        blocks.append({"type": "text", "text": text})
    blocks.extend(tool_use_block(c) for c in calls)
    return blocks


def model_info(model_id: str, created: int) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": stamp}


def model_list(models: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "data": models,
        "has_more": False,
        "first_id": models[0]["id"] if models else None,
        "last_id": models[-1]["id"] if models else None,
    }

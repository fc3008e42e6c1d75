"""Responses API output objects (pure): the response, its output items and usage.

Shared by the whole reply and the stream encoder, so both give the same shapes. The response
echoes the request's settings as OpenAI's does (`ResponseShell`), which the SDKs parse.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.protocols.responses_convert import (
    NamespaceMap,
    call_item_types,
    custom_input,
    namespace_map,
)
from mlx_manager.protocols.responses_schemas import ResponsesRequest
from mlx_manager.types import FinishReason, ToolCall, Usage

Item = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class ResponseShell:
    """What every response object of one request shares: its id, creation time, the
    request's settings as echoed back, how to name namespaced calls and the output item
    type of calls that are not ``function_call``s."""

    response_id: str
    created_at: int
    settings: dict[str, Any]
    names: NamespaceMap = field(default_factory=dict)
    call_types: Mapping[str, str] = field(default_factory=dict)

    def call_type(self, name: str) -> str:
        return self.call_types.get(name, "function_call")

    def call_item(self, item_id: str, call: ToolCall, status: str) -> Item:
        return call_item(item_id, call, status, self.names, self.call_type(call.name))

    def new_call_id(self, name: str) -> str:
        return new_id(_ID_PREFIXES[self.call_type(name)])

    def response(
        self,
        status: str,
        output: list[Item],
        usage: Usage | None = None,
        error: dict[str, Any] | None = None,
        incomplete_reason: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": (
                {"reason": incomplete_reason} if incomplete_reason is not None else None
            ),
            **self.settings,
            "output": output,
            "usage": usage_dict(usage) if usage is not None else None,
        }


def response_shell(body: ResponsesRequest) -> ResponseShell:
    return ResponseShell(
        new_id("resp"),
        int(time.time()),
        echoed_settings(body),
        namespace_map(body),
        call_item_types(body),
    )


def echoed_settings(body: ResponsesRequest) -> dict[str, Any]:
    """The request's settings as a response shows them (OpenAI's defaults where unset)."""
    choice = body.tool_choice or "auto"
    parallel = body.parallel_tool_calls
    text = body.text.model_dump(by_alias=True, exclude_none=True) if body.text else {}
    reasoning = body.reasoning
    return {
        "model": body.model,
        "instructions": body.instructions,
        "tools": [t.model_dump(by_alias=True, exclude_none=True) for t in body.tools or ()],
        "tool_choice": choice if isinstance(choice, str) else choice.model_dump(exclude_none=True),
        "parallel_tool_calls": True if parallel is None else parallel,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "text": {"format": {"type": "text"}, **text},
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": reasoning.summary if reasoning else None,
        },
        "previous_response_id": body.previous_response_id,
        "store": True if body.store is None else body.store,
        "background": False,
        "metadata": body.metadata or {},
        "user": body.user,
        "truncation": body.truncation or "disabled",
        "service_tier": "default",
    }


def status_of(reason: FinishReason | None) -> tuple[str, str | None]:
    """The response's status and its incomplete reason, from how generation ended."""
    if reason is FinishReason.LENGTH:
        return "incomplete", "max_output_tokens"
    return "completed", None


def text_part(text: str) -> Item:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str | None, status: str) -> Item:
    """An assistant message; ``text`` None while it has no content part yet."""
    content = [] if text is None else [text_part(text)]
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def reasoning_part(text: str) -> Item:
    return {"type": "reasoning_text", "text": text}


def reasoning_item(item_id: str, text: str | None, status: str) -> Item:
    content = [] if text is None else [reasoning_part(text)]
    return {"type": "reasoning", "id": item_id, "summary": [], "content": content, "status": status}


_ID_PREFIXES = {"function_call": "fc", "custom_tool_call": "ctc", "tool_search_call": "tsc"}


def call_item(
    item_id: str, call: ToolCall, status: str, names: NamespaceMap, kind: str = "function_call"
) -> Item:
    """A call as an output item of type `kind`, as the client named its tool: a namespaced
    one by its namespace and name; a custom tool's input is its string argument; a tool
    search's arguments are an object."""
    item: Item = {"type": kind, "id": item_id, "call_id": call.id}
    if kind == "tool_search_call":
        return {
            **item,
            "arguments": _object(call.arguments),
            "execution": "client",
            "status": status,
        }
    item["name"] = call.name
    if kind == "custom_tool_call":
        item["input"] = custom_input(call.arguments)
    else:
        item["arguments"] = call.arguments
    item["status"] = status
    if call.name in names:
        item["namespace"], item["name"] = names[call.name]
    return item


def output_items(
    text: str, reasoning: str, calls: list[ToolCall], status: str, shell: ResponseShell
) -> list[Item]:
    """A whole reply's output: reasoning, then the message, then the calls."""
    items: list[Item] = []
    if reasoning:
        items.append(reasoning_item(new_id("rs"), reasoning, status))
    if text or not calls:
        items.append(message_item(new_id("msg"), text, status))
    items += [shell.call_item(shell.new_call_id(call.name), call, "completed") for call in calls]
    return items


def _object(arguments: str) -> Any:
    """Arguments as JSON (as they are when they do not parse, e.g. cut short)."""
    try:
        return json.loads(arguments) if arguments else {}
    except ValueError:
        return arguments


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        # Thinking and answer tokens are not counted apart here.
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


# The codes a response's `error` may carry (a closed set in OpenAI's schema); any other
# error is a server_error there, its own code going in the stream's `error` event.
RESPONSE_ERROR_CODES = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "failed_to_download_image",
    }
)


def error_dict(code: str | None, message: str) -> dict[str, Any]:
    return {"code": code if code in RESPONSE_ERROR_CODES else "server_error", "message": message}

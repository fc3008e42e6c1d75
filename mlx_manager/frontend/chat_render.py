"""Chat messages (internal types) -> the dicts a chat template reads, tools included.

Native tool templates get transformers' conventions: ``tools=[{"type": "function", ...}]``,
assistant turns with ``tool_calls`` (arguments as a dict) and ``tool`` turns. Templates without
tool support get the Hermes presentation (see models/tool_formats.py): the tool list appended to
the system prompt, assistant calls written as ``<tool_call>`` blocks, and tool results as a
user turn of ``<tool_response>`` blocks, so any template can render a tool round trip.
"""

from __future__ import annotations

import json
from typing import Any

from mlx_manager.models.tool_formats import ToolFormat
from mlx_manager.types import ChatMessage, GenerateRequest, ToolCall, ToolChoiceMode, ToolSpec

TOOL_SYSTEM_PROMPT = (
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n"
    "<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def openai_tool(tool: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "description": tool.description}
    function["parameters"] = dict(tool.parameters) or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def presented_tools(request: GenerateRequest) -> tuple[ToolSpec, ...]:
    """The tools the model is shown: none when tool_choice is "none"."""
    if request.tool_choice.mode is ToolChoiceMode.NONE:
        return ()
    return request.tools


def template_inputs(
    request: GenerateRequest, fmt: ToolFormat | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(messages, tools) for ``ChatFamily.render_prompt``."""
    messages = request.messages or ()
    tools = [openai_tool(t) for t in presented_tools(request)]
    if fmt is not None and fmt.native:
        return [_native_message(m) for m in messages], tools or None
    dicts = _fallback_messages(messages)
    if tools:
        dicts = _with_tool_prompt(dicts, tools)
    return dicts, None


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments)
    except ValueError:
        return call.arguments


def _content(message: ChatMessage) -> str | list[dict[str, Any]]:
    """The text, or with images the parts in order (``{"type": "image"}`` marks an image)."""
    if not message.parts:
        return message.content
    return [
        {"type": "text", "text": p} if isinstance(p, str) else {"type": "image"}
        for p in message.parts
    ]


def _native_message(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": _content(message)}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": _arguments(c)},
            }
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def hermes_call_text(call: ToolCall) -> str:
    body = json.dumps({"name": call.name, "arguments": _arguments(call)}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def _fallback_messages(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            block = f"<tool_response>\n{message.content}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "tool_results": True})
            continue
        if message.parts:  # images: only in user messages, never beside tool calls
            out.append({"role": message.role, "content": _content(message)})
            continue
        content = message.content
        if message.tool_calls:
            calls = "\n".join(hermes_call_text(c) for c in message.tool_calls)
            content = f"{content}\n{calls}" if content else calls
        out.append({"role": message.role, "content": content})
    for item in out:
        item.pop("tool_results", None)
    return out


def _with_tool_prompt(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    prompt = TOOL_SYSTEM_PROMPT.format(tools=listing)
    if messages and messages[0]["role"] in ("system", "developer"):
        first = {**messages[0], "role": "system"}
        first["content"] = f"{first['content']}\n\n{prompt}" if first["content"] else prompt
        return [first, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]

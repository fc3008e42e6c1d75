"""How a model writes tool calls: the markers around a call, its parser, its grammar kind.

The parsers are mlx-lm's (``mlx_lm.tool_parsers``: mlx-lm picks one from the chat template and
exposes it as ``TokenizerWrapper.tool_parser``); we add only Llama 3's bare JSON calls, which
mlx-lm has no module for. Decisions:

- **Native templates** (the chat template renders ``tools`` itself: Qwen 2.5+, Llama 3.1+,
  Mistral v0.3+, ...) get the tool list and tool turns through ``apply_chat_template(tools=...)``
  and the parser mlx-lm inferred, else the family's usual format.
- **Templates without tool support** (SmolLM2, Llama 2, Gemma 2, ...) get the Hermes convention,
  the one Qwen, NousHermes and many fine-tunes were trained on: the tool list in the system
  prompt and ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks in the reply.
  Forced calls (``tool_choice`` required or named) are then guaranteed well-formed by
  constrained decoding, whatever the model's size.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlx_lm.tool_parsers import json_tools, mistral

from mlx_manager.models.families import _template_text
from mlx_manager.types import ToolCall

Parser = Callable[[str, Any], Any]  # mlx-lm's parse_tool_call(text, tools) signature

# Grammar kinds that frontend/constraints.py can force a call for.
HERMES = "hermes"
LLAMA3_JSON = "llama3_json"
MISTRAL = "mistral"


@dataclass(frozen=True, slots=True)
class ToolFormat:
    name: str
    start: str  # text that opens a call ("" = the whole reply is a bare JSON call)
    end: str  # text that closes a call ("" = the call runs to the end of the reply)
    parse: Parser
    native: bool  # the chat template renders tools and tool turns itself
    grammar: str | None = None  # HERMES, LLAMA3_JSON, MISTRAL; None: no forced-call grammar


def parse_llama3_json(text: str, tools: Any = None) -> list[dict[str, Any]]:
    """Llama 3.1's bare calls: ``{"name": ..., "parameters": {...}}``, ``;``-separated."""
    decoder = json.JSONDecoder()
    calls, pos, text = [], 0, text.strip()
    while pos < len(text):
        value, pos = decoder.raw_decode(text, pos)
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise ValueError("not a tool call")
        arguments = value.get("parameters", value.get("arguments", {}))
        calls.append({"name": value["name"], "arguments": arguments})
        pos = _skip_separators(text, pos)
    if not calls:
        raise ValueError("no tool call")
    return calls


def _skip_separators(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n;":
        pos += 1
    return pos


HERMES_FALLBACK = ToolFormat(
    "hermes", "<tool_call>", "</tool_call>", json_tools.parse_tool_call, False, HERMES
)
_FAMILY_NATIVE = {
    "llama": ToolFormat("llama3_json", "", "", parse_llama3_json, True, LLAMA3_JSON),
    "mistral": ToolFormat(
        "mistral", mistral.tool_call_start, "", mistral.parse_tool_call, True, MISTRAL
    ),
}
_GRAMMAR_OF_MLX_PARSER = {"json_tools": HERMES, "mistral": MISTRAL}


def supports_tools_natively(tokenizer: Any) -> bool:
    return "tools" in _template_text(tokenizer)


def tool_format_for(tokenizer: Any, family_name: str) -> ToolFormat:
    """The tool format of a model (see the module docstring for the policy)."""
    if not supports_tools_natively(tokenizer):
        return HERMES_FALLBACK
    parser = getattr(tokenizer, "tool_parser", None)
    if parser is not None:
        module = parser.__module__.rsplit(".", 1)[-1]
        return ToolFormat(
            module,
            tokenizer.tool_call_start or "",
            tokenizer.tool_call_end or "",
            parser,
            True,
            _GRAMMAR_OF_MLX_PARSER.get(module),
        )
    native = _FAMILY_NATIVE.get(family_name)
    if native is not None:
        return native
    return ToolFormat(
        "hermes", "<tool_call>", "</tool_call>", json_tools.parse_tool_call, True, HERMES
    )


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_calls(fmt: ToolFormat, text: str, tools: Any = None) -> list[ToolCall]:
    """Tool calls in one call's text; ValueError when it is not a well-formed call."""
    try:
        parsed = fmt.parse(text, tools)
    except (ValueError, SyntaxError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a tool call: {exc}") from exc
    items = parsed if isinstance(parsed, list) else [parsed]
    calls = []
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError("a tool call without a name")
        arguments = item.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        call_id = item.get("id") if isinstance(item.get("id"), str) else new_call_id()
        calls.append(ToolCall(call_id, name, arguments))
    return calls

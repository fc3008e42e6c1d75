"""Tools and tool turns into chat-template inputs: native templates and the Hermes fallback."""

from __future__ import annotations

import json

from mlx_manager.frontend.chat_render import template_inputs
from mlx_manager.models.tool_formats import HERMES_FALLBACK, tool_format_for
from mlx_manager.types import (
    ChatMessage,
    GenerateRequest,
    SamplingParams,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
)

TOOL = ToolSpec(
    "get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)
ROUND_TRIP = (
    ChatMessage("system", "Be brief."),
    ChatMessage("user", "Weather in Paris?"),
    ChatMessage("assistant", "", (ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
    ChatMessage("tool", "18C", tool_call_id="call_1"),
    ChatMessage("tool", "sunny", tool_call_id="call_1"),
)


def request(**fields: object) -> GenerateRequest:
    return GenerateRequest("r", "m", SamplingParams(), messages=ROUND_TRIP, tools=(TOOL,), **fields)  # type: ignore[arg-type]


def test_fallback_presents_tools_in_the_system_prompt() -> None:
    messages, tools = template_inputs(request(), HERMES_FALLBACK)
    assert tools is None
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert (
        messages[0]["content"].startswith("Be brief.\n\n")
        and '"name": "get_weather"' in messages[0]["content"]
    )
    assert (
        messages[2]["content"]
        == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    assert (
        messages[3]["content"]
        == "<tool_response>\n18C\n</tool_response>\n<tool_response>\nsunny\n</tool_response>"
    )


def test_tool_choice_none_hides_tools() -> None:
    messages, _ = template_inputs(
        request(tool_choice=ToolChoice(ToolChoiceMode.NONE)), HERMES_FALLBACK
    )
    assert messages[0]["content"] == "Be brief."


def test_native_templates_get_transformers_conventions() -> None:
    native = HERMES_FALLBACK.__class__(
        **{**{f: getattr(HERMES_FALLBACK, f) for f in HERMES_FALLBACK.__slots__}, "native": True}
    )
    messages, tools = template_inputs(request(), native)
    assert tools == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": dict(TOOL.parameters),
            },
        }
    ]
    assert messages[2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert messages[3] == {"role": "tool", "content": "18C", "tool_call_id": "call_1"}


class FakeTokenizer:
    def __init__(self, template: str, parser: object = None) -> None:
        self.chat_template = template
        self.tool_parser = parser
        self.tool_call_start = "<tool_call>"
        self.tool_call_end = "</tool_call>"


def test_tool_format_selection() -> None:
    from mlx_lm.tool_parsers import json_tools, pythonic

    assert tool_format_for(FakeTokenizer("{{ messages }}"), "qwen") is HERMES_FALLBACK
    qwen = tool_format_for(
        FakeTokenizer("{% if tools %}...{% endif %}", json_tools.parse_tool_call), "qwen"
    )
    assert (qwen.name, qwen.native, qwen.grammar) == ("json_tools", True, "hermes")
    lfm = tool_format_for(
        FakeTokenizer("{% if tools %}{% endif %}", pythonic.parse_tool_call), "chatml"
    )
    assert (lfm.name, lfm.grammar) == ("pythonic", None)
    llama = tool_format_for(FakeTokenizer("{% if tools %}{% endif %}"), "llama")
    assert (llama.name, llama.start, llama.grammar) == ("llama3_json", "", "llama3_json")
    mistral = tool_format_for(FakeTokenizer("{% if tools %}{% endif %}"), "mistral")
    assert (mistral.start, mistral.grammar) == ("[TOOL_CALLS]", "mistral")
    assert json.loads('{"x": 1}') == {"x": 1}

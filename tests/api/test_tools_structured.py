"""Tool calling and structured output end to end on the real SmolLM2 (official SDKs).

SmolLM2's chat template has no tool support, so tools go through the Hermes fallback (system
prompt + <tool_call> blocks); forced calls and JSON schemas are guaranteed by constrained
decoding, which is what makes a 135M model's output always parse and validate.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import jsonschema
import openai
import pytest

from tests.conftest import MODEL

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}},
    "required": ["city"],
}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER_SCHEMA,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a timezone",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string", "maxLength": 20}},
                "required": ["tz"],
            },
        },
    },
]
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
SCHEMAS = {
    "nested": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "address": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 12},
                    "zip": {"type": "integer", "maximum": 99999},
                },
                "required": ["city", "zip"],
            },
        },
        "required": ["name", "address"],
    },
    "enums": {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "size": {"type": "string", "enum": ["S", "M", "L"]},
        },
        "required": ["color", "size"],
    },
    "arrays": {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 8},
                "minItems": 1,
                "maxItems": 3,
            },
            "scores": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 9},
                "maxItems": 3,
            },
        },
        "required": ["tags", "scores"],
    },
}


def _check_weather_call(call: Any) -> None:
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_forced_tool_call(client: openai.OpenAI, choice: Any) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice=choice,
        max_tokens=40,
        temperature=0,  # type: ignore[arg-type]
    )
    choice0 = reply.choices[0]
    assert choice0.finish_reason == "tool_calls"
    assert choice0.message.content is None
    assert len(choice0.message.tool_calls or []) == 1
    _check_weather_call(choice0.message.tool_calls[0])  # type: ignore[index]


def test_streamed_tool_call_with_the_sdk_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=40,
        temperature=0,  # type: ignore[arg-type]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in kinds
    assert final.choices[0].finish_reason == "tool_calls"
    _check_weather_call(final.choices[0].message.tool_calls[0])  # type: ignore[index]


def test_tool_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        max_tokens=40,
        temperature=0,  # type: ignore[arg-type]
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    second = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=TOOLS,
        max_tokens=12,
        temperature=0,  # type: ignore[arg-type]
    )
    assert second.usage is not None and second.usage.prompt_tokens > first.usage.prompt_tokens  # type: ignore[union-attr]
    assert second.choices[0].finish_reason in ("stop", "length", "tool_calls")


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output_validates(client: openai.OpenAI, name: str, stream: bool) -> None:
    args: dict[str, Any] = dict(
        model=MODEL,
        messages=[{"role": "user", "content": f"Give me an example {name} record as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True},
        },
        max_tokens=60,
        temperature=0,
    )
    if stream:
        chunks = list(client.chat.completions.create(**args, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reason = [
            c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
        ]
    else:
        reply = client.chat.completions.create(**args)
        text, reason = reply.choices[0].message.content or "", [reply.choices[0].finish_reason]
    assert reason == ["stop"], text
    jsonschema.validate(json.loads(text), SCHEMAS[name])


def test_json_object(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe Paris as a JSON object with two keys."}],
        response_format={"type": "json_object"},
        max_tokens=60,
        temperature=0,
    )
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


def test_unenforceable_schema_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "string", "format": "nonsense"}},
            },
            max_tokens=5,
        )
    assert info.value.body["param"] == "response_format"  # type: ignore[index]


def test_anthropic_tool_use(anthropic_client: anthropic.Anthropic) -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": WEATHER_SCHEMA,
        }
    ]
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=40,
        messages=ASK,
        tools=tools,
        tool_choice={"type": "any"},
        extra_body={"temperature": 0},  # type: ignore[arg-type]
    )
    assert message.stop_reason == "tool_use"
    use = next(block for block in message.content if block.type == "tool_use")
    assert use.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(use.input, WEATHER_SCHEMA)  # type: ignore[union-attr]
    with anthropic_client.messages.stream(
        model=MODEL,
        max_tokens=40,
        messages=ASK,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_body={"temperature": 0},  # type: ignore[arg-type]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds and final.stop_reason == "tool_use"
    streamed = next(block for block in final.content if block.type == "tool_use")
    assert streamed.input == use.input  # type: ignore[union-attr]
    follow_up = [
        *ASK,
        {"role": "assistant", "content": [use.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C, sunny"}],
        },  # type: ignore[union-attr]
    ]
    answer = anthropic_client.messages.create(
        model=MODEL, max_tokens=8, messages=follow_up, tools=tools, extra_body={"temperature": 0}
    )  # type: ignore[arg-type]
    assert answer.stop_reason in ("end_turn", "max_tokens", "tool_use")


def test_anthropic_output_format(anthropic_client: anthropic.Anthropic) -> None:
    schema = SCHEMAS["enums"]
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=30,
        messages=[{"role": "user", "content": "Pick a color and a size."}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
        extra_body={"temperature": 0},
    )
    jsonschema.validate(json.loads(message.content[0].text), schema)  # type: ignore[union-attr]


def test_streamed_arguments_arrive_piece_by_piece(
    client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    """Agent UIs show a call as it is written: the arguments come in several deltas."""
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice="required",
            max_tokens=40,
            temperature=0,  # type: ignore[arg-type]
            stream=True,
        )
    )
    pieces = [
        call.function.arguments
        for chunk in chunks
        if chunk.choices and chunk.choices[0].delta.tool_calls
        for call in chunk.choices[0].delta.tool_calls
        if call.function and call.function.arguments
    ]
    assert len(pieces) > 2, pieces
    jsonschema.validate(json.loads("".join(pieces)), WEATHER_SCHEMA)
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}]
    with anthropic_client.messages.stream(
        model=MODEL,
        max_tokens=40,
        messages=ASK,
        tools=tools,
        tool_choice={"type": "any"},
        extra_body={"temperature": 0},  # type: ignore[arg-type]
    ) as stream:
        partial = [e.partial_json for e in stream if e.type == "input_json"]  # type: ignore[union-attr]
    assert len(partial) > 2, partial


def test_a_call_cut_by_max_tokens_is_a_call_not_markup(
    client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    for stream in (False, True):
        args: dict[str, Any] = {
            "model": MODEL,
            "messages": ASK,
            "tools": TOOLS,
            "tool_choice": "required",
            "max_tokens": 9,
        }
        if stream:
            chunks = list(client.chat.completions.create(**args, stream=True))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            names = [
                call.function.name
                for c in chunks
                if c.choices and c.choices[0].delta.tool_calls
                for call in c.choices[0].delta.tool_calls
                if call.function and call.function.name
            ]
            reason = next(c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason)
        else:
            choice = client.chat.completions.create(**args).choices[0]
            text = choice.message.content or ""
            names = [c.function.name for c in choice.message.tool_calls or []]  # type: ignore[union-attr]
            reason = choice.finish_reason
        assert "<tool_call>" not in text and reason == "length", (stream, text)
        assert names in ([], ["get_weather"]) or names == ["get_time"], names
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=9,
        messages=ASK,
        tools=[{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}],
        tool_choice={"type": "any"},
    )  # type: ignore[arg-type]
    assert message.stop_reason == "max_tokens"
    assert all("<tool_call>" not in getattr(b, "text", "") for b in message.content)

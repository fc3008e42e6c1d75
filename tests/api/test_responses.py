"""The Responses API end to end on the real SmolLM2, through the official openai SDK.

Forced calls and JSON schemas are decoded under a grammar, so the 135M model's calls and
structured output always parse; lengths stay small (CPU).
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

from tests.conftest import MODEL

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}},
    "required": ["city"],
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": WEATHER_SCHEMA,
}
ASK = "What's the weather in Paris?"


def _weather_call(response: Any) -> Any:
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1, response.output
    call = calls[0]
    assert call.name == "get_weather" and call.call_id and call.id.startswith("fc_")
    jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)
    return call


def test_string_input(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input="What is the capital of France?", max_output_tokens=8, temperature=0
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert response.output[0].type == "message" and response.output_text.strip()
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and 0 < usage.output_tokens <= 8
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert response.model == MODEL and response.temperature == 0


def test_max_output_tokens_makes_it_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input="Write a long story about a dragon.", max_output_tokens=2
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 2


def test_items_and_instructions(client: openai.OpenAI) -> None:
    items: Any = [
        {"role": "user", "content": [{"type": "input_text", "text": "Hi! My name is Ann."}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Hello Ann!"}]},
        {"type": "message", "role": "user", "content": "What is my name?"},
    ]
    short = "Answer in one word."
    long = short + " Be polite and kind to everyone." * 4

    def prompt_tokens(instructions: str | None) -> int:
        response = client.responses.create(
            model=MODEL, input=items, instructions=instructions, max_output_tokens=2
        )
        assert response.instructions == instructions and response.usage is not None
        return response.usage.input_tokens

    turns = prompt_tokens(None)
    # The earlier turns reach the prompt, and so do the instructions, whole.
    assert turns > 25
    assert prompt_tokens(long) >= prompt_tokens(short) + 20


def test_stream_events_and_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL, input="Say hello.", max_output_tokens=40, temperature=0
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    # get_final_response() wants response.completed (a cut-off stream ends incomplete).
    assert kinds[-1] == "response.completed"
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kind in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and final.output_text == deltas
    assert final.usage is not None and final.usage.output_tokens > 0
    assert final.id == events[0].response.id  # type: ignore[union-attr]


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}])
def test_forced_function_call(client: openai.OpenAI, choice: Any) -> None:
    response = client.responses.create(
        model=MODEL,
        input=ASK,
        tools=[WEATHER_TOOL],
        tool_choice=choice,
        max_output_tokens=40,
        temperature=0,
    )
    assert response.status == "completed"
    _weather_call(response)
    assert response.tools[0].name == "get_weather"  # type: ignore[union-attr]


def test_streamed_function_call(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL,
        input=ASK,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        max_output_tokens=40,
        temperature=0,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert "response.function_call_arguments.delta" in kinds
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    call = _weather_call(final)
    assert len(done) == 1 and done[0].arguments == call.arguments
    added = [e for e in events if e.type == "response.output_item.added"]
    assert added[-1].item.type == "function_call" and added[-1].item.arguments == ""


def test_function_call_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=MODEL,
        input=ASK,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_output_tokens=40,
        temperature=0,
    )
    call = _weather_call(first)
    result: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "18C, sunny"}
    chained = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[result],
        tools=[WEATHER_TOOL],
        max_output_tokens=8,
        temperature=0,
    )
    stateless = client.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": ASK}, *first.output, result],  # type: ignore[list-item]
        tools=[WEATHER_TOOL],
        max_output_tokens=8,
        temperature=0,
    )
    assert chained.previous_response_id == first.id
    assert chained.usage is not None and stateless.usage is not None and first.usage is not None
    # Both carry the question, the call and its output: the same prompt, longer than the first.
    assert chained.usage.input_tokens == stateless.usage.input_tokens
    assert chained.usage.input_tokens > first.usage.input_tokens + 5
    assert chained.status in ("completed", "incomplete")


def test_namespace_tools_round_trip(client: openai.OpenAI) -> None:
    namespace: Any = {
        "type": "namespace",
        "name": "mcp__weather__",
        "description": "Weather tools",
        "tools": [{**WEATHER_TOOL}],
    }
    first = client.responses.create(
        model=MODEL,
        input=ASK,
        tools=[namespace],
        tool_choice="required",
        max_output_tokens=40,
        temperature=0,
    )
    call = _weather_call(first)  # named as the client named it, inside its namespace
    assert call.namespace == "mcp__weather__"
    result: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    second = client.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": ASK}, call.model_dump(exclude_none=True), result],
        tools=[namespace],
        max_output_tokens=4,
    )
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens


def test_json_schema_text_format(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "population": {"type": "integer", "minimum": 0, "maximum": 99999999},
        },
        "required": ["city", "population"],
    }
    response = client.responses.create(
        model=MODEL,
        input="Give me a city and its population as JSON.",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
        max_output_tokens=40,
        temperature=0,
    )
    assert response.status == "completed", response.output_text
    jsonschema.validate(json.loads(response.output_text), schema)
    assert response.text is not None and response.text.format.type == "json_schema"  # type: ignore[union-attr]


def test_hosted_tools_are_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, input=ASK, tools=[{"type": "web_search"}])
    error = info.value.body
    assert isinstance(error, dict)
    assert error["code"] == "unsupported_parameter" and error["param"] == "tools[0].type"
    assert "web_search" in error["message"]


def test_unknown_previous_response_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model=MODEL, input="Hi", previous_response_id="resp_nope")
    error = info.value.body
    assert isinstance(error, dict) and error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id" and "resp_nope" in error["message"]


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="Hi", max_output_tokens=1, store=False)
    assert first.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input="Hi", previous_response_id=first.id)


def test_background_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODEL, input="Hi", background=True)
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "background"

"""Real clients of the Responses API against the real server: the openai-agents SDK (its
default Responses model, with a function tool) and langchain's ChatOpenAI with
``use_responses_api=True``. Forced tool choices make the tiny model call the tool."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIProvider,
    RunConfig,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI

from tests.conftest import MODEL
from tests.fixtures.server import ServerProcess

QUESTION = "What's the weather in Paris?"


@pytest.fixture
def run_config(server: ServerProcess) -> RunConfig:
    """A new client per test: an async client stays bound to the event loop it first ran on."""
    set_tracing_disabled(True)
    client = AsyncOpenAI(
        base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120
    )
    # The provider's Responses model (the SDK's default API), on this server.
    return RunConfig(model_provider=OpenAIProvider(openai_client=client, use_responses=True))


def weather_agent(calls: list[str]) -> Agent[Any]:
    @function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return f"18C and sunny in {city}"

    return Agent(
        name="weather",
        instructions="You answer questions about the weather.",
        model=MODEL,
        tools=[get_weather],
        # Forced on the first turn; the SDK resets it to auto once the tool has run.
        model_settings=ModelSettings(tool_choice="required", max_tokens=40, temperature=0),
    )


def test_agents_sdk_runs_a_tool_and_answers(run_config: RunConfig) -> None:
    calls: list[str] = []
    result = Runner.run_sync(weather_agent(calls), QUESTION, run_config=run_config, max_turns=4)
    assert len(calls) >= 1 and all(isinstance(city, str) for city in calls)
    kinds = [item.type for item in result.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"]
    assert kinds[-1] == "message_output_item" and isinstance(result.final_output, str)
    # Each model call went through /v1/responses and reported usage.
    assert len(result.raw_responses) >= 2
    assert all(r.usage.input_tokens > 0 for r in result.raw_responses)


def test_agents_sdk_streamed(run_config: RunConfig) -> None:
    calls: list[str] = []

    async def run() -> tuple[list[str], Any]:
        streamed = Runner.run_streamed(
            weather_agent(calls), QUESTION, run_config=run_config, max_turns=4
        )
        kinds = [event.type async for event in streamed.stream_events()]
        return kinds, streamed

    kinds, streamed = asyncio.run(run())
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds
    assert len(calls) >= 1 and isinstance(streamed.final_output, str)


def chat_model(server: ServerProcess, max_tokens: int, **settings: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL,
        base_url=f"{server.base_url}/v1",
        api_key="unused",  # type: ignore[arg-type]
        use_responses_api=True,
        max_tokens=max_tokens,  # type: ignore[call-arg]
        max_retries=0,
        **settings,
    )


def test_langchain_invoke_and_stream(server: ServerProcess) -> None:
    chat = chat_model(server, 12, temperature=0)
    message = chat.invoke("What is the capital of France?")
    assert message.text.strip()
    assert message.usage_metadata is not None and message.usage_metadata["input_tokens"] > 0
    assert message.response_metadata["id"].startswith("resp_")
    chunks = list(chat.stream("Say hello."))
    assert "".join(chunk.text for chunk in chunks).strip()


def test_langchain_reasoning_effort_is_accepted(server: ServerProcess) -> None:
    chat = chat_model(server, 4, reasoning_effort="low")
    assert chat.invoke("Hi").usage_metadata is not None


def test_langchain_tool_round_trip(server: ServerProcess) -> None:
    chat = chat_model(server, 40, temperature=0)  # room for the whole call

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return f"18C and sunny in {city}"

    forced = chat.bind_tools([get_weather], tool_choice="get_weather")
    first = forced.invoke(QUESTION)
    assert len(first.tool_calls) == 1
    call = first.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str)
    assert call["id"]
    result = ToolMessage(json.dumps(get_weather.invoke(call["args"])), tool_call_id=call["id"])
    second = chat.bind_tools([get_weather]).invoke([("user", QUESTION), first, result])
    assert second.usage_metadata is not None
    assert second.usage_metadata["input_tokens"] > first.usage_metadata["input_tokens"]  # type: ignore[index]

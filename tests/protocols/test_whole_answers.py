"""Whole (non-streamed) upstream answers decoded into the events their streams would give:
text, reasoning, tool calls, stop reasons, usage and errors, in both dialects."""

from __future__ import annotations

from typing import Any

from mlx_manager.errors import Overloaded, RateLimited
from mlx_manager.protocols.anthropic_upstream import MessageStreamDecoder, messages_body
from mlx_manager.protocols.openai_upstream import ChatStreamDecoder, chat_body
from mlx_manager.types import (
    ChatMessage,
    FinishReason,
    GenerateRequest,
    GenerationEvent,
    SamplingParams,
    ToolCall,
    Usage,
)

REQUEST = GenerateRequest(
    "r", "m", SamplingParams(max_tokens=8), messages=(ChatMessage("user", "hi"),), stream=False
)


def final(events: list[GenerationEvent]) -> GenerationEvent:
    assert events[-1].finished
    return events[-1]


def test_bodies_ask_for_a_whole_answer_only_when_the_caller_does() -> None:
    whole = chat_body(REQUEST, "m", "openai_compatible")
    assert whole["stream"] is False and "stream_options" not in whole
    streamed = chat_body(
        GenerateRequest("r", "m", SamplingParams(), REQUEST.messages), "m", "openai"
    )
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}
    assert messages_body(REQUEST, "m", 4096)["stream"] is False


def test_openai_whole_answer_with_reasoning_tool_calls_and_cached_usage() -> None:
    answer: dict[str, Any] = {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me look.",
                    "reasoning_content": "weather needs a tool",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "time", "arguments": "{}"},
                        },
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 9,
            "prompt_tokens_details": {"cached_tokens": 16},
        },
    }
    events = ChatStreamDecoder("r", "p").whole(answer)
    assert "".join(e.text for e in events) == "Let me look."
    assert "".join(e.reasoning for e in events) == "weather needs a tool"
    last = final(events)
    assert last.finish_reason is FinishReason.TOOL_CALLS
    assert last.tool_calls == (
        ToolCall("call_1", "weather", '{"city": "Paris"}'),
        ToolCall("call_2", "time", "{}"),
    )
    assert last.usage == Usage(20, 9, 16)


def test_openai_whole_answer_length_and_error_body() -> None:
    answer = {
        "choices": [{"message": {"content": "abc"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3},
    }
    events = ChatStreamDecoder("r", "p").whole(answer)
    assert final(events).finish_reason is FinishReason.LENGTH
    assert final(events).usage == Usage(2, 3)
    error = {"error": {"type": "rate_limit_error", "message": "slow down"}}
    events = ChatStreamDecoder("r", "p").whole(error)
    assert len(events) == 1 and events[0].error is not None
    assert isinstance(events[0].error.api_error(), RateLimited)


def test_anthropic_whole_answer_with_thinking_tool_use_and_cache_usage() -> None:
    message = {
        "type": "message",
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "a tool helps", "signature": "x"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 4, "cache_read_input_tokens": 10, "output_tokens": 7},
    }
    events = MessageStreamDecoder("r", "p").whole(message)
    assert "".join(e.text for e in events) == "Checking."
    assert "".join(e.reasoning for e in events) == "a tool helps"
    last = final(events)
    assert last.finish_reason is FinishReason.TOOL_CALLS
    assert last.tool_calls == (ToolCall("toolu_1", "weather", '{"city": "Paris"}'),)
    assert last.usage == Usage(14, 7, 10)


def test_anthropic_whole_answer_stop_sequence_and_error_body() -> None:
    message = {
        "type": "message",
        "content": [{"type": "text", "text": "one two"}],
        "stop_reason": "stop_sequence",
        "stop_sequence": "three",
        "usage": {"input_tokens": 5, "output_tokens": 2},
    }
    last = final(MessageStreamDecoder("r", "p").whole(message))
    assert last.finish_reason is FinishReason.STOP and last.stop_sequence == "three"
    assert last.usage == Usage(5, 2)
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events = MessageStreamDecoder("r", "p").whole(error)
    assert len(events) == 1 and events[0].error is not None
    assert isinstance(events[0].error.api_error(), Overloaded)

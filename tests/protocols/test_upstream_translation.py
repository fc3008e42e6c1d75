"""Internal -> upstream wire requests, upstream streams -> events, upstream errors (pure)."""

from __future__ import annotations

import json

import pytest

from mlx_manager.errors import (
    AuthenticationFailed,
    ErrorInfo,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    UnsupportedParameter,
)
from mlx_manager.protocols.anthropic_upstream import MessageStreamDecoder, messages_body
from mlx_manager.protocols.openai_upstream import ChatStreamDecoder, chat_body
from mlx_manager.protocols.upstream_errors import upstream_error
from mlx_manager.types import (
    ChatMessage,
    FinishReason,
    GenerateRequest,
    ImageRef,
    ResponseFormat,
    SamplingParams,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
    Usage,
)

TOOL = ToolSpec(
    "get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)
CONVERSATION = (
    ChatMessage("system", "Be brief."),
    ChatMessage(
        "user",
        "Look",
        parts=(
            "What is this?",
            ImageRef("data:image/png;base64,iVBOR", "p"),
            ImageRef("https://x/i.png", "q"),
        ),
    ),
    ChatMessage(
        "assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)
    ),
    ChatMessage("tool", "18C", tool_call_id="call_1"),
    ChatMessage("user", "And now?"),
)


def request(**kw: object) -> GenerateRequest:
    args: dict[str, object] = dict(
        request_id="r1",
        model="front-name",
        sampling=SamplingParams(
            max_tokens=30, temperature=1.5, top_p=0.9, seed=7, stop=("END",), top_k=5
        ),
        messages=CONVERSATION,
        tools=(TOOL,),
        tool_choice=ToolChoice(ToolChoiceMode.REQUIRED),
        parallel_tool_calls=False,
        response_format=ResponseFormat({"type": "object"}, "rec"),
        template_kwargs=(("enable_thinking", False),),
    )
    args.update(kw)
    return GenerateRequest(**args)  # type: ignore[arg-type]


def test_openai_compatible_body() -> None:
    body = chat_body(request(), "up-model", "openai_compatible")
    assert body["model"] == "up-model" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (
        body["max_tokens"],
        body["temperature"],
        body["top_p"],
        body["seed"],
        body["stop"],
        body["top_k"],
    ) == (30, 1.5, 0.9, 7, ["END"], 5)
    messages = body["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "image_url", "image_url": {"url": "https://x/i.png"}},
    ]
    assert messages[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "rec", "schema": {"type": "object"}},
    }
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


def test_openai_body_uses_openai_names_and_drops_extensions() -> None:
    named = request(tool_choice=ToolChoice(ToolChoiceMode.NAMED, "get_weather"))
    body = chat_body(named, "gpt-x", "openai")
    assert body["max_completion_tokens"] == 30 and "max_tokens" not in body
    assert "top_k" not in body and "chat_template_kwargs" not in body
    assert body["reasoning_effort"] == "minimal"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_raw_prompts_and_logprobs_cannot_go_upstream() -> None:
    with pytest.raises(UnsupportedParameter):
        chat_body(request(messages=None, prompt_text="hi"), "m", "openai_compatible")
    with pytest.raises(UnsupportedParameter):
        chat_body(request(sampling=SamplingParams(logprobs=True)), "m", "openai")


def test_anthropic_body() -> None:
    body = messages_body(request(), "claude-x", 4096)
    assert body["model"] == "claude-x" and body["stream"] is True
    assert body["system"] == "Be brief."
    assert body["max_tokens"] == 30 and body["temperature"] == 1.0  # clamped to [0, 1]
    assert body["stop_sequences"] == ["END"] and body["top_k"] == 5 and "seed" not in body
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]  # tool result and next user turn merged
    images = body["messages"][0]["content"]
    assert images[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
    }
    assert images[2] == {"type": "image", "source": {"type": "url", "url": "https://x/i.png"}}
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
        {"type": "text", "text": "And now?"},
    ]
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather", "input_schema": TOOL.parameters}
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}
    }
    assert body["thinking"] == {"type": "disabled"}


def test_anthropic_body_defaults_max_tokens_and_enables_thinking() -> None:
    body = messages_body(
        request(sampling=SamplingParams(), template_kwargs=(("enable_thinking", True),)), "c", 4096
    )
    assert body["max_tokens"] == 4096
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_openai_stream_decoding() -> None:
    decoder = ChatStreamDecoder("r1", "up")
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_a",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ' "Oslo"}'}}]},
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": 4,
                "prompt_tokens_details": {"cached_tokens": 3},
            },
        },
    ]
    events = [e for e in (decoder.feed(c) for c in chunks) if e is not None]
    assert [e.reasoning for e in events] == ["hmm", "", "", ""]
    assert events[1].tool_call_deltas == (ToolCallDelta(0, "", "call_a", "get_weather"),)
    assert "".join(d.arguments for e in events for d in e.tool_call_deltas) == '{"city": "Oslo"}'
    last = decoder.end()
    assert last.finish_reason is FinishReason.TOOL_CALLS
    assert last.tool_calls == (ToolCall("call_a", "get_weather", '{"city": "Oslo"}'),)
    assert last.usage == Usage(11, 4, 3) and decoder.prompt_tokens == 11


@pytest.mark.parametrize(
    ("wire", "reason"), [("stop", FinishReason.STOP), ("length", FinishReason.LENGTH)]
)
def test_openai_finish_reasons(wire: str, reason: FinishReason) -> None:
    decoder = ChatStreamDecoder("r", "up")
    assert (
        decoder.feed({"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": wire}]})
        is not None
    )
    assert decoder.end().finish_reason is reason


def test_openai_error_inside_the_stream() -> None:
    event = ChatStreamDecoder("r", "up").feed(
        {"error": {"message": "boom", "type": "server_error"}}
    )
    assert event is not None and event.error is not None
    assert isinstance(event.error.api_error(), InternalError)


def test_anthropic_stream_decoding() -> None:
    decoder = MessageStreamDecoder("r1", "anth")
    events_in = [
        {
            "type": "message_start",
            "message": {
                "usage": {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 1}
            },
        },
        {"type": "ping"},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "let me see"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "x"},
        },
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "Sure."},
        },
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"city"'},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": ': "Rome"}'},
        },
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    events = [e for e in (decoder.feed(d) for d in events_in) if e is not None]
    assert decoder.prompt_tokens == 7
    assert events[0].reasoning == "let me see" and events[1].text == "Sure."
    assert events[2].tool_call_deltas == (ToolCallDelta(0, "", "toolu_1", "get_weather"),)
    last = events[-1]
    assert last.finish_reason is FinishReason.TOOL_CALLS
    assert last.tool_calls == (ToolCall("toolu_1", "get_weather", '{"city": "Rome"}'),)
    assert last.usage == Usage(7, 9, 2)


@pytest.mark.parametrize(
    ("stop", "reason", "sequence"),
    [
        ("end_turn", FinishReason.STOP, None),
        ("max_tokens", FinishReason.LENGTH, None),
        ("stop_sequence", FinishReason.STOP, "END"),
    ],
)
def test_anthropic_stop_reasons(stop: str, reason: FinishReason, sequence: str | None) -> None:
    decoder = MessageStreamDecoder("r", "a")
    decoder.feed(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": sequence},
            "usage": {"output_tokens": 1},
        }
    )
    last = decoder.feed({"type": "message_stop"})
    assert last is not None and last.finish_reason is reason and last.stop_sequence == sequence


def test_anthropic_error_event() -> None:
    event = MessageStreamDecoder("r", "a").feed(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    assert event is not None and event.error is not None
    assert isinstance(event.error.api_error(), Overloaded)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequest),
        (401, AuthenticationFailed),
        (403, PermissionDenied),
        (404, ModelNotFound),
        (413, RequestTooLarge),
        (429, RateLimited),
        (500, InternalError),
        (503, Overloaded),
        (529, Overloaded),
        (502, InternalError),
    ],
)
def test_upstream_http_errors_map_onto_the_taxonomy(status: int, kind: type) -> None:
    body = json.dumps({"type": "error", "error": {"type": "x", "message": "from upstream"}})
    error = upstream_error("up", status, body, retry_after="7")
    assert type(error) is kind
    assert "from upstream" in error.message and "'up'" in error.message
    if status in (429, 503, 529):
        assert error.headers["Retry-After"] == "7"
    # The taxonomy round-trips through ErrorInfo (how errors cross as events).
    assert type(ErrorInfo.of(error).api_error()) is kind


def test_upstream_error_never_shows_key_or_url() -> None:
    body = {
        "error": {
            "message": "Incorrect API key sk-live-123 for http://10.1.2.3:9/v1",
            "type": "invalid_request_error",
        }
    }
    error = upstream_error("up", 401, body, secrets=("sk-live-123", "http://10.1.2.3:9/v1"))
    assert "sk-live-123" not in error.message and "10.1.2.3" not in error.message
    assert "Incorrect API key" in error.message

"""Responses replies and stream events: shapes the openai SDK's own types accept, the event
order, tool calls from deltas and from whole calls, incomplete and failed responses."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent

from mlx_manager.errors import ErrorInfo, ServerShuttingDown
from mlx_manager.protocols.responses_output import ResponseShell, response_shell
from mlx_manager.protocols.responses_reply import ResponsesReply
from mlx_manager.protocols.responses_schemas import ResponsesRequest
from mlx_manager.protocols.responses_stream import ResponseStreamEncoder
from mlx_manager.types import (
    ChatMessage,
    FinishReason,
    GenerationEvent,
    ToolCall,
    ToolCallDelta,
    Usage,
)

# The SDK's event classes by their `type`.
EVENT_CLASSES = {
    cls.model_fields["type"].annotation.__args__[0]: cls
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}
USAGE = Usage(10, 4, cached_tokens=3)
NS_TOOL = {"type": "namespace", "name": "crm", "tools": [{"type": "function", "name": "find"}]}


def shell(**fields: Any) -> ResponseShell:
    return response_shell(ResponsesRequest.model_validate({"model": "m", "input": "x", **fields}))


def end(reason: FinishReason = FinishReason.STOP, **fields: Any) -> GenerationEvent:
    return GenerationEvent("r", finish_reason=reason, usage=USAGE, **fields)


def encode(events: list[GenerationEvent], **fields: Any) -> list[dict[str, Any]]:
    encoder = ResponseStreamEncoder(shell(**fields))
    out = encoder.start()
    for event in events:
        out += encoder.feed(event)
    return out


def check_sdk_shapes(events: list[dict[str, Any]]) -> None:
    """Every event validates as the SDK's class for its type; numbered 0, 1, 2, ..."""
    for event in events:
        EVENT_CLASSES[event["type"]].model_validate(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_text_stream_sequence() -> None:
    events = encode([GenerationEvent("r", text="Hel"), end(text="lo")])
    check_sdk_shapes(events)
    assert kinds(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    item_id = events[2]["item"]["id"]
    assert item_id.startswith("msg_") and events[2]["item"]["status"] == "in_progress"
    assert all(e["item_id"] == item_id for e in events[3:8])
    assert events[6]["text"] == "Hello"
    final = Response.model_validate(events[-1]["response"])
    assert final.output_text == "Hello" and final.status == "completed"
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 3
    assert final.usage.total_tokens == 14
    assert events[0]["response"]["id"] == final.id and events[0]["response"]["output"] == []


def test_reasoning_then_text_are_two_items() -> None:
    events = encode([GenerationEvent("r", reasoning="hmm"), end(text="Yes")])
    check_sdk_shapes(events)
    assert "response.reasoning_text.delta" in kinds(events)
    assert "response.reasoning_text.done" in kinds(events)
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "message"]
    assert output[0]["content"] == [{"type": "reasoning_text", "text": "hmm"}]
    assert output[0]["id"].startswith("rs_")
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert added == [0, 1]


def test_tool_call_deltas_stream_the_arguments() -> None:
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    events = encode(
        [
            GenerationEvent("r", text="Checking."),
            GenerationEvent(
                "r", tool_call_deltas=(ToolCallDelta(0, id="call_1", name="get_weather"),)
            ),
            GenerationEvent("r", tool_call_deltas=(ToolCallDelta(0, '{"city": '),)),
            GenerationEvent("r", tool_call_deltas=(ToolCallDelta(0, '"Paris"}'),)),
            end(FinishReason.TOOL_CALLS, tool_calls=(call,)),
        ]
    )
    check_sdk_shapes(events)
    calls = [e for e in events if e["type"].startswith("response.function_call_arguments")]
    assert [(e["type"].rsplit(".", 1)[1], e.get("delta")) for e in calls] == [
        ("delta", '{"city": '),
        ("delta", '"Paris"}'),
        ("done", None),
    ]
    assert calls[-1]["arguments"] == call.arguments
    added = [e for e in events if e["type"] == "response.output_item.added"][1]
    assert added["item"]["arguments"] == "" and added["item"]["call_id"] == "call_1"
    # The message closes before the call opens.
    message_done = kinds(events).index("response.output_item.done")
    assert message_done < events.index(added)
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call"]
    assert output[1]["arguments"] == call.arguments and output[1]["status"] == "completed"


def test_a_whole_call_without_deltas_opens_streams_and_closes() -> None:
    calls = (ToolCall("call_1", "a", "{}"), ToolCall("call_2", "b", '{"x": 1}'))
    events = encode([end(FinishReason.TOOL_CALLS, tool_calls=calls)])
    check_sdk_shapes(events)
    assert kinds(events)[2:] == [
        *(
            [
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
            ]
            * 2
        ),
        "response.completed",
    ]
    output = events[-1]["response"]["output"]
    assert [(i["call_id"], i["arguments"]) for i in output] == [
        ("call_1", "{}"),
        ("call_2", '{"x": 1}'),
    ]


def test_namespaced_calls_come_back_by_namespace_and_name() -> None:
    call = ToolCall("call_1", "crm__find", "{}")
    events = encode([end(FinishReason.TOOL_CALLS, tool_calls=(call,))], tools=[NS_TOOL])
    item = events[-1]["response"]["output"][0]
    assert (item["namespace"], item["name"]) == ("crm", "find")


CUSTOM_TOOL = {"type": "custom", "name": "apply_patch"}


def test_a_custom_tool_call_streams_its_input_whole() -> None:
    call = ToolCall("call_1", "apply_patch", '{"input": "*** Begin Patch\\n"}')
    events = encode(
        [
            GenerationEvent(
                "r", tool_call_deltas=(ToolCallDelta(0, id="call_1", name="apply_patch"),)
            ),
            GenerationEvent("r", tool_call_deltas=(ToolCallDelta(0, '{"input": '),)),
            GenerationEvent("r", tool_call_deltas=(ToolCallDelta(0, '"*** Begin Patch\\n"}'),)),
            end(FinishReason.TOOL_CALLS, tool_calls=(call,)),
        ],
        tools=[CUSTOM_TOOL],
    )
    check_sdk_shapes(events)
    assert kinds(events)[2:] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, delta, done, item_done, completed = events[2:]
    assert added["item"]["type"] == "custom_tool_call" and added["item"]["input"] == ""
    assert delta["delta"] == done["input"] == "*** Begin Patch\n"
    assert item_done["item"] == {
        "type": "custom_tool_call",
        "id": added["item"]["id"],
        "call_id": "call_1",
        "name": "apply_patch",
        "input": "*** Begin Patch\n",
        "status": "completed",
    }
    response = Response.model_validate(completed["response"])
    assert response.output[0].type == "custom_tool_call"


def test_a_whole_reply_names_custom_calls_beside_function_calls() -> None:
    calls = (ToolCall("c1", "apply_patch", '{"input": "p"}'), ToolCall("c2", "f", "{}"))
    reply = ResponsesReply(shell(tools=[CUSTOM_TOOL, {"type": "function", "name": "f"}]))
    response = Response.model_validate(reply.body([end(FinishReason.TOOL_CALLS, tool_calls=calls)]))
    custom, function = response.output
    assert (custom.type, custom.input, custom.call_id) == ("custom_tool_call", "p", "c1")
    assert (function.type, function.arguments) == ("function_call", "{}")


TOOL_SEARCH = {"type": "tool_search", "execution": "client"}


def test_a_tool_search_call_is_one_item_with_object_arguments() -> None:
    call = ToolCall("call_1", "tool_search", '{"query": "calendar"}')
    events = encode(
        [
            GenerationEvent(
                "r", tool_call_deltas=(ToolCallDelta(0, id="call_1", name="tool_search"),)
            ),
            GenerationEvent("r", tool_call_deltas=(ToolCallDelta(0, '{"query": "calendar"}'),)),
            end(FinishReason.TOOL_CALLS, tool_calls=(call,)),
        ],
        tools=[TOOL_SEARCH],
    )
    assert kinds(events)[2:] == [
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    check_sdk_shapes(events)
    item = events[3]["item"]
    assert item == {
        "type": "tool_search_call",
        "id": item["id"],
        "call_id": "call_1",
        "arguments": {"query": "calendar"},
        "execution": "client",
        "status": "completed",
    }
    response = Response.model_validate(events[-1]["response"])
    assert response.output[0].type == "tool_search_call"


def test_max_output_tokens_makes_an_incomplete_response() -> None:
    events = encode(
        [
            GenerationEvent("r", text="Once"),
            GenerationEvent("r", tool_call_deltas=(ToolCallDelta(0, id="c", name="f"),)),
            end(FinishReason.LENGTH, tool_call_deltas=(ToolCallDelta(0, '{"a'),)),
        ]
    )
    check_sdk_shapes(events)
    final = events[-1]
    assert final["type"] == "response.incomplete"
    response = final["response"]
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    # The cut-off call closes with what was generated.
    assert response["output"][1]["arguments"] == '{"a'
    assert response["output"][1]["status"] == "incomplete"


def test_nothing_generated_is_one_empty_message() -> None:
    events = encode([end()])
    check_sdk_shapes(events)
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == ""


def test_failure_mid_stream() -> None:
    encoder = ResponseStreamEncoder(shell())
    events = [*encoder.start(), *encoder.feed(GenerationEvent("r", text="Hi"))]
    events += encoder.fail(ServerShuttingDown("bye"))
    check_sdk_shapes(events)
    assert kinds(events)[-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "server_shutting_down" and events[-2]["message"] == "bye"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "bye"}


def test_settings_are_echoed() -> None:
    fields = {
        "instructions": "Be brief.",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "f"},
        "parallel_tool_calls": False,
        "temperature": 0.5,
        "max_output_tokens": 9,
        "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "low"},
        "previous_response_id": "resp_1",
        "store": False,
        "metadata": {"k": "v"},
        "truncation": "auto",
    }
    body = encode([end(text="{}")], **fields)[-1]["response"]
    Response.model_validate(body)
    assert body["reasoning"] == {"effort": "low", "summary": None}
    for name, value in fields.items():
        if name != "reasoning":
            assert body[name] == value, name


# --- the reply ---------------------------------------------------------------------------


async def _aiter(events: list[GenerationEvent]) -> AsyncIterator[GenerationEvent]:
    for event in events:
        yield event


def test_whole_reply_and_its_kept_turn() -> None:
    kept: list[ChatMessage] = []
    call = ToolCall("call_1", "f", "{}")
    events = [
        GenerationEvent("r", reasoning="think", text="Sure."),
        end(FinishReason.TOOL_CALLS, tool_calls=(call,)),
    ]
    body = ResponsesReply(shell(), kept.append).body(events)
    response = Response.model_validate(body)
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
    assert response.output_text == "Sure." and response.status == "completed"
    assert kept == [ChatMessage("assistant", "Sure.", tool_calls=(call,))]


def test_whole_reply_cut_by_length() -> None:
    body = ResponsesReply(shell()).body([end(FinishReason.LENGTH, text="Once upon")])
    assert body["status"] == "incomplete" and body["output"][0]["status"] == "incomplete"


def test_streamed_reply_keeps_the_turn_before_completing() -> None:
    kept: list[ChatMessage] = []
    reply = ResponsesReply(shell(), kept.append)

    async def run() -> list[Any]:
        out = []
        async for payload in reply.stream(_aiter([GenerationEvent("r", text="A"), end(text="B")])):
            if isinstance(payload, dict) and payload["type"] == "response.completed":
                assert kept == [ChatMessage("assistant", "AB")]
            out.append(payload)
        return out

    events = asyncio.run(run())
    assert events[-1]["type"] == "response.completed"


def test_failed_stream_keeps_nothing() -> None:
    kept: list[ChatMessage] = []
    failed = GenerationEvent(
        "r", finish_reason=FinishReason.ERROR, error=ErrorInfo.of(ServerShuttingDown("bye"))
    )

    async def run() -> list[Any]:
        return [p async for p in ResponsesReply(shell(), kept.append).stream(_aiter([failed]))]

    assert [p["type"] for p in asyncio.run(run())][-1] == "response.failed"
    assert kept == []


def test_failed_whole_reply_raises_the_error() -> None:
    failed = GenerationEvent(
        "r", finish_reason=FinishReason.ERROR, error=ErrorInfo.of(ServerShuttingDown("bye"))
    )
    with pytest.raises(ServerShuttingDown):
        ResponsesReply(shell()).body([failed])

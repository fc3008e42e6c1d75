"""Responses requests -> GenerateRequest: input items, tools, choices, formats, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from mlx_manager.errors import InvalidRequest, UnsupportedParameter
from mlx_manager.protocols import responses_convert as convert
from mlx_manager.protocols.responses_schemas import ResponsesRequest
from mlx_manager.types import (
    ChatMessage,
    GenerateRequest,
    ImageRef,
    ResponseFormat,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
)

FN = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def body(**fields: Any) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": "hi", **fields})


def internal(**fields: Any) -> GenerateRequest:
    request = body(**fields)
    return convert.responses_request_to_internal(request, "r", convert.input_messages(request))


def test_string_input_with_instructions_and_sampling() -> None:
    request = internal(instructions="Be brief.", max_output_tokens=7, temperature=0.2, top_p=0.9)
    assert request.messages == (ChatMessage("system", "Be brief."), ChatMessage("user", "hi"))
    assert request.sampling.max_tokens == 7
    assert (request.sampling.temperature, request.sampling.top_p) == (0.2, 0.9)
    assert request.model == "m" and request.tools == () and request.response_format is None


def test_instructions_stay_out_of_the_kept_conversation() -> None:
    request = body(instructions="Be brief.")
    assert convert.input_messages(request) == (ChatMessage("user", "hi"),)


def test_items_become_chat_messages() -> None:
    items = [
        {"type": "message", "role": "developer", "content": "Rules."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": []},
        {
            "type": "message",
            "role": "assistant",
            "id": "msg_1",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}],
        },
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {
            "type": "function_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "noon"}],
        },
    ]
    messages = convert.input_messages(body(input=items))
    assert messages == (
        ChatMessage("developer", "Rules."),
        ChatMessage("user", "Weather?"),
        ChatMessage(
            "assistant",
            "Let me check.",
            tool_calls=(ToolCall("c1", "get_weather", "{}"), ToolCall("c2", "get_time", "{}")),
        ),
        ChatMessage("tool", "sunny", tool_call_id="c1", name="get_weather"),
        ChatMessage("tool", "noon", tool_call_id="c2", name="get_time"),
    )


def test_a_call_with_no_assistant_text_opens_its_own_turn() -> None:
    items = [
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
    ]
    messages = convert.input_messages(body(input=items))
    assert messages[1] == ChatMessage("assistant", "", tool_calls=(ToolCall("c1", "f", "{}"),))


def test_user_images_keep_their_place() -> None:
    content = [
        {"type": "input_text", "text": "A"},
        {"type": "input_image", "image_url": "data:image/png;base64,QQ==", "detail": "low"},
        {"type": "input_text", "text": "B"},
    ]
    (message,) = convert.input_messages(body(input=[{"role": "user", "content": content}]))
    assert message.content == "A\nB"
    assert message.parts == (
        "A",
        ImageRef("data:image/png;base64,QQ==", "input[0].content[1].image_url"),
        "B",
    )


@pytest.mark.parametrize(
    ("item", "param"),
    [
        (
            {"role": "assistant", "content": [{"type": "input_image", "image_url": "x"}]},
            "input[0].content[0]",
        ),
        (
            {"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]},
            "input[0].content[0].file_id",
        ),
        (
            {"role": "user", "content": [{"type": "input_file", "file_data": "x"}]},
            "input[0].content[0].type",
        ),
        ({"type": "web_search_call", "id": "ws_1"}, "input[0].type"),
        ({"type": "item_reference", "id": "msg_1"}, "input[0].type"),
    ],
)
def test_unsupported_items_and_parts_are_400(item: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        convert.input_messages(body(input=[item]))
    assert info.value.param == param


def test_unknown_kinds_are_named() -> None:
    with pytest.raises(UnsupportedParameter, match="'computer_call' items"):
        convert.input_messages(body(input=[{"type": "computer_call", "id": "x"}]))


def test_empty_input_is_400() -> None:
    for empty in ("", []):
        with pytest.raises(InvalidRequest):
            convert.input_messages(body(input=empty))


def test_function_and_namespace_tools_flatten() -> None:
    namespace = {
        "type": "namespace",
        "name": "mcp__files__",
        "description": "File tools",
        "tools": [{"type": "function", "name": "read", "description": "Read a file"}],
    }
    plain_ns = {"type": "namespace", "name": "crm", "tools": [{"type": "function", "name": "find"}]}
    request = body(tools=[FN, namespace, plain_ns])
    assert convert.tool_specs(request) == (
        ToolSpec("get_weather", "", {"type": "object"}),
        ToolSpec("mcp__files__read", "Read a file", {}),
        ToolSpec("crm__find", "", {}),
    )
    assert convert.namespace_map(request) == {
        "mcp__files__read": ("mcp__files__", "read"),
        "crm__find": ("crm", "find"),
    }


def test_a_namespaced_function_may_be_forced() -> None:
    choice = {"type": "function", "name": "find", "namespace": "crm"}
    plain_ns = {"type": "namespace", "name": "crm", "tools": [{"type": "function", "name": "find"}]}
    request = internal(tools=[plain_ns], tool_choice=choice)
    assert request.tool_choice == ToolChoice(ToolChoiceMode.NAMED, "crm__find")


def test_a_namespaced_call_in_the_input_uses_the_flat_name() -> None:
    item = {"type": "function_call", "call_id": "c", "name": "find", "arguments": "{}"}
    messages = convert.input_messages(body(input=[{**item, "namespace": "crm"}]))
    assert messages[0].tool_calls == (ToolCall("c", "crm__find", "{}"),)


@pytest.mark.parametrize(
    ("tools", "param", "named"),
    [
        ([{"type": "web_search"}], "tools[0].type", "web_search"),
        ([FN, {"type": "file_search", "vector_store_ids": ["v"]}], "tools[1].type", "file_search"),
        ([{"type": "mcp", "server_label": "x"}], "tools[0].type", "mcp"),
        ([{"type": "code_interpreter", "container": "auto"}], "tools[0].type", "code_interpreter"),
        (
            [{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}],
            "tools[0].tools[0].type",
            "web_search",
        ),
    ],
)
def test_hosted_tools_are_400_naming_them(tools: list[Any], param: str, named: str) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        internal(tools=tools)
    assert info.value.param == param and repr(named) in info.value.message


# Codex's apply_patch (gpt-5 models): a freeform tool with a lark grammar.
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files. FREEFORM: do not wrap the patch in JSON.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+"},
}


def test_a_custom_tool_is_a_function_of_one_string() -> None:
    request = internal(tools=[APPLY_PATCH, {"type": "custom", "name": "note"}])
    patch, note = request.tools
    assert (patch.name, patch.description) == ("apply_patch", APPLY_PATCH["description"])
    assert patch.parameters["required"] == ["input"]
    assert patch.parameters["additionalProperties"] is False
    about = patch.parameters["properties"]["input"]
    assert about["type"] == "string" and "start: begin_patch hunk+" in about["description"]
    assert "lark grammar" in about["description"]
    assert note.parameters["properties"]["input"]["description"] == "The input, as free text."
    assert convert.call_item_types(body(tools=[FN, APPLY_PATCH])) == {
        "apply_patch": "custom_tool_call"
    }


def test_custom_tools_in_a_namespace_and_forced_by_name() -> None:
    nested = {"type": "namespace", "name": "ed", "tools": [{"type": "custom", "name": "c"}]}
    request = internal(
        tools=[nested], tool_choice={"type": "custom", "name": "c", "namespace": "ed"}
    )
    assert request.tool_choice == ToolChoice(ToolChoiceMode.NAMED, "ed__c")
    assert convert.call_item_types(body(tools=[nested])) == {"ed__c": "custom_tool_call"}
    forced = internal(tools=[APPLY_PATCH], tool_choice={"type": "custom", "name": "apply_patch"})
    assert forced.tool_choice == ToolChoice(ToolChoiceMode.NAMED, "apply_patch")


def test_custom_tool_calls_and_outputs_in_the_input() -> None:
    items = [
        {"role": "user", "content": "Fix it."},
        {
            "type": "custom_tool_call",
            "id": "ctc_1",
            "status": "completed",
            "call_id": "c1",
            "name": "apply_patch",
            "input": '*** Begin Patch\n*** Add File: "a"\n',
        },
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done!"},
    ]
    messages = convert.input_messages(body(input=items, tools=[APPLY_PATCH]))
    call = ToolCall("c1", "apply_patch", '{"input": "*** Begin Patch\\n*** Add File: \\"a\\"\\n"}')
    assert messages[1] == ChatMessage("assistant", "", tool_calls=(call,))
    assert messages[2] == ChatMessage("tool", "Done!", tool_call_id="c1", name="apply_patch")
    assert convert.custom_input(call.arguments) == items[1]["input"]


# Codex (gpt-5 models) searches its deferred tools itself.
TOOL_SEARCH = {
    "type": "tool_search",
    "execution": "client",
    "description": "Searches over deferred tool metadata.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}


def test_a_client_tool_search_is_a_function() -> None:
    request = internal(tools=[FN, TOOL_SEARCH])
    assert request.tools[1] == ToolSpec(
        "tool_search", TOOL_SEARCH["description"], TOOL_SEARCH["parameters"]
    )
    assert convert.call_item_types(body(tools=[TOOL_SEARCH])) == {"tool_search": "tool_search_call"}
    bare = internal(tools=[{"type": "tool_search", "execution": "client"}]).tools[0]
    assert bare.parameters["required"] == ["query"]


def test_a_server_tool_search_is_400() -> None:
    with pytest.raises(UnsupportedParameter) as info:
        internal(tools=[{"type": "tool_search"}])
    assert info.value.param == "tools[0].execution"


def test_tool_search_calls_and_outputs_in_the_input() -> None:
    found = [{"type": "function", "name": "lookup", "parameters": {}}]
    items = [
        {"role": "user", "content": "Find a tool."},
        {
            "type": "tool_search_call",
            "id": "tsc_1",
            "call_id": "c1",
            "execution": "client",
            "arguments": {"query": "lookup"},
            "status": "completed",
        },
        {"type": "tool_search_output", "call_id": "c1", "execution": "client", "tools": found},
    ]
    messages = convert.input_messages(body(input=items, tools=[TOOL_SEARCH]))
    call = ToolCall("c1", "tool_search", '{"query": "lookup"}')
    assert messages[1] == ChatMessage("assistant", "", tool_calls=(call,))
    text = '[{"type": "function", "name": "lookup", "parameters": {}}]'
    assert messages[2] == ChatMessage("tool", text, tool_call_id="c1", name="tool_search")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [('{"input": "x y"}', "x y"), ('{"input": "cut', '{"input": "cut'), ('{"a": 1}', '{"a": 1}')],
)
def test_custom_input_of_the_arguments(arguments: str, expected: str) -> None:
    assert convert.custom_input(arguments) == expected


def test_duplicate_function_names_are_400() -> None:
    with pytest.raises(InvalidRequest, match="two functions"):
        internal(tools=[FN, FN])


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, ToolChoice()),
        ("auto", ToolChoice()),
        ("none", ToolChoice(ToolChoiceMode.NONE)),
        ("required", ToolChoice(ToolChoiceMode.REQUIRED)),
        (
            {"type": "function", "name": "get_weather"},
            ToolChoice(ToolChoiceMode.NAMED, "get_weather"),
        ),
    ],
)
def test_tool_choice(choice: Any, expected: ToolChoice) -> None:
    request = internal(tools=[FN], tool_choice=choice, parallel_tool_calls=False)
    assert request.tool_choice == expected and request.parallel_tool_calls is False


@pytest.mark.parametrize(
    ("choice", "tools", "param"),
    [
        ({"type": "function", "name": "other"}, [FN], "tool_choice.name"),
        ({"type": "web_search_preview"}, [FN], "tool_choice.type"),
        ({"type": "allowed_tools", "mode": "auto", "tools": []}, [FN], "tool_choice.type"),
        ("required", None, "tool_choice"),
    ],
)
def test_bad_tool_choice_is_400(choice: Any, tools: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        internal(tools=tools, tool_choice=choice)
    assert info.value.param == param


def test_text_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    assert internal(text={"format": fmt}).response_format == ResponseFormat(schema, "thing")
    assert internal(text={"format": fmt}).response_format.schema == schema  # type: ignore[union-attr]
    assert internal(text={"format": {"type": "json_object"}}).response_format == ResponseFormat()
    plain = internal(text={"format": {"type": "text"}, "verbosity": "low"})
    assert plain.response_format is None
    with pytest.raises(InvalidRequest) as info:
        internal(text={"format": {"type": "json_schema", "name": "x"}})
    assert info.value.param == "text.format.schema"


def test_reasoning_effort_none_switches_thinking_off() -> None:
    assert internal(reasoning={"effort": "none"}).template_kwargs == (("enable_thinking", False),)
    assert internal(reasoning={"effort": "high", "summary": "auto"}).template_kwargs == ()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
    ],
)
def test_server_side_state_is_400(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        internal(**fields)
    assert info.value.param == param


def test_hints_are_accepted() -> None:
    request = internal(
        store=False,
        metadata={"k": "v"},
        user="u",
        truncation="auto",
        include=["reasoning.encrypted_content"],
        service_tier="auto",
        prompt_cache_key="k",
        safety_identifier="s",
        stream_options={"include_obfuscation": False},
        client_metadata={"turn_id": "t", "session_id": "s"},  # Codex, on every request
    )
    assert request.messages == (ChatMessage("user", "hi"),)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="frobnicate"):
        body(frobnicate=True)

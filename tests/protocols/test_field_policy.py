"""The field policy: hints accepted and reported, missing capabilities refused by name,
unknown fields still refused; as the wire schemas and the 400 builder apply it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from mlx_manager.api.errors import validation_error
from mlx_manager.errors import UnsupportedParameter
from mlx_manager.protocols.anthropic_schemas import CountTokensRequest, MessagesRequest
from mlx_manager.protocols.field_policy import (
    IGNORED_FIELDS_HEADER,
    OPENAI_CHAT,
    FieldPolicy,
    ignored_header,
)
from mlx_manager.protocols.openai_convert import chat_request_to_internal
from mlx_manager.protocols.openai_schemas import ChatCompletionRequest, CompletionRequest

HI = [{"role": "user", "content": "hi"}]
CHAT = {"model": "m", "messages": HI}
MESSAGES = {"model": "m", "max_tokens": 1, "messages": HI}

OPENAI_HINTS: list[tuple[str, Any]] = [
    ("service_tier", "flex"),
    ("verbosity", "low"),
    ("prompt_cache_key", "k"),
    ("prompt_cache_retention", "24h"),
    ("safety_identifier", "u-1"),
    ("modalities", ["text"]),
    ("store", True),
    ("metadata", {"team": "a"}),
    ("user", "u-1"),
]
ANTHROPIC_HINTS: list[tuple[str, Any]] = [
    ("diagnostics", {"enabled": True}),
    ("service_tier", "auto"),
    ("speed", "fast"),
    ("inference_geo", "us"),
    ("metadata", {"user_id": "u-1"}),
]


def _refusal(model: type[BaseModel], body: dict[str, Any]) -> UnsupportedParameter:
    """The 400 the server answers for `body`, built as api/errors.py builds it."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    errors = [{**e, "loc": ("body", *e["loc"])} for e in info.value.errors()]
    error = validation_error(RequestValidationError(errors))
    assert isinstance(error, UnsupportedParameter), error.message
    return error


@pytest.mark.parametrize(("name", "value"), OPENAI_HINTS)
def test_openai_hints_are_accepted_and_reported(name: str, value: Any) -> None:
    body = ChatCompletionRequest.model_validate({**CHAT, name: value})
    assert body.ignored_fields() == (name,)


def test_openai_hints_on_legacy_completions() -> None:
    body = CompletionRequest.model_validate({"model": "m", "prompt": "x", "store": False})
    assert body.ignored_fields() == ("store",)


def test_null_hints_set_nothing_and_declared_hints_are_still_validated() -> None:
    assert (
        ChatCompletionRequest.model_validate({**CHAT, "service_tier": None}).ignored_fields() == ()
    )
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({**CHAT, "metadata": {"a": 1}})


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"modalities": ["text", "audio"]}, "modalities", "audio output"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", "audio output"),
        ({"web_search_options": {}}, "web_search_options", "web search"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction", "predicted outputs"),
        ({"functions": [{"name": "f"}]}, "functions", "legacy function calling"),
    ],
)
def test_openai_capabilities_are_refused_by_name(
    extra: dict[str, Any], param: str, words: str
) -> None:
    error = _refusal(ChatCompletionRequest, {**CHAT, **extra})
    assert error.param == param
    assert f"'{param}' asks for {words}" in error.message


def test_unknown_fields_are_still_refused() -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate({**CHAT, "frobnicate": 1})
    assert info.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError):
        MessagesRequest.model_validate({**MESSAGES, "frobnicate": 1})


def test_assistant_reasoning_is_an_alias_of_reasoning_content() -> None:
    assistant = {"role": "assistant", "content": "4", "reasoning": "2+2"}
    body = ChatCompletionRequest.model_validate({**CHAT, "messages": [*HI, assistant]})
    assert body.messages[1].reasoning_content == "2+2"
    assert body.ignored_fields() == ()


@pytest.mark.parametrize(
    ("effort", "thinking", "level"),
    [
        ("none", False, "low"),
        ("minimal", False, "low"),
        ("low", True, "low"),
        ("xhigh", True, "high"),
    ],
)
def test_reasoning_effort_sets_the_templates_thinking_switch(
    effort: str, thinking: bool, level: str
) -> None:
    body = ChatCompletionRequest.model_validate({**CHAT, "reasoning_effort": effort})
    kwargs = dict(chat_request_to_internal(body, "r").template_kwargs)
    assert kwargs == {"enable_thinking": thinking, "reasoning_effort": level}
    assert body.ignored_fields() == ()


def test_chat_template_kwargs_win_over_reasoning_effort() -> None:
    body = ChatCompletionRequest.model_validate(
        {**CHAT, "reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": True}}
    )
    assert dict(chat_request_to_internal(body, "r").template_kwargs)["enable_thinking"] is True


@pytest.mark.parametrize(("name", "value"), ANTHROPIC_HINTS)
def test_anthropic_hints_are_accepted_and_reported(name: str, value: Any) -> None:
    assert MessagesRequest.model_validate({**MESSAGES, name: value}).ignored_fields() == (name,)


def test_count_tokens_accepts_cache_control_and_speed() -> None:
    body = CountTokensRequest.model_validate(
        {"model": "m", "messages": HI, "cache_control": {"type": "ephemeral"}, "speed": "fast"}
    )
    assert body.ignored_fields() == ("speed",)  # cache_control is honoured: caching is automatic


def test_anthropic_tool_hints_are_reported_once() -> None:
    tool = {
        "name": "t",
        "input_schema": {"type": "object"},
        "strict": True,
        "eager_input_streaming": True,
        "defer_loading": False,
        "input_examples": [{}],
        "cache_control": {"type": "ephemeral"},
    }
    body = MessagesRequest.model_validate({**MESSAGES, "tools": [tool, {**tool, "name": "u"}]})
    assert body.ignored_fields() == (
        "tools[].strict",
        "tools[].eager_input_streaming",
        "tools[].defer_loading",
        "tools[].input_examples",
    )


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "bash_20250124", "name": "bash"},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "computer_20250124", "name": "computer", "display_width_px": 1024},
    ],
)
def test_server_tools_are_refused_naming_the_type(tool: dict[str, Any]) -> None:
    error = _refusal(MessagesRequest, {**MESSAGES, "tools": [tool]})
    assert error.param == "tools.0.type"
    assert f"server tool '{tool['type']}'" in error.message
    assert "input_schema" not in error.message.split(";")[0]  # not "missing input_schema"


def test_mcp_servers_are_refused_by_name() -> None:
    servers = [{"type": "url", "url": "https://x", "name": "x"}]
    error = _refusal(MessagesRequest, {**MESSAGES, "mcp_servers": servers})
    assert error.param == "mcp_servers" and "MCP" in error.message


def test_context_management_thinking_edits_are_a_no_op_tool_clearing_reported() -> None:
    thinking = {"type": "clear_thinking_20251015", "keep": "all"}
    body = MessagesRequest.model_validate({**MESSAGES, "context_management": {"edits": [thinking]}})
    assert body.ignored_fields() == ()
    tools = {"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": 3}}
    body = CountTokensRequest.model_validate(
        {"model": "m", "messages": HI, "context_management": {"edits": [thinking, tools]}}
    )
    assert body.ignored_fields() == ("context_management.edits[].clear_tool_uses_20250919",)
    with pytest.raises(ValidationError):
        MessagesRequest.model_validate(
            {**MESSAGES, "context_management": {"edits": [{"type": "compact_99"}]}}
        )


def test_ignored_header() -> None:
    assert ignored_header([]) == {}
    assert ignored_header(["a", "b", "a"]) == {IGNORED_FIELDS_HEADER: "a,b"}


def test_policy_split_keeps_declared_hints_and_drops_the_others() -> None:
    policy = FieldPolicy(hints=frozenset({"a", "b"}))
    kept, ignored = policy.split({"a": 1, "b": 2, "c": 3, "d": None}, declared={"a", "c"})
    assert kept == {"a": 1, "c": 3, "d": None} and ignored == ("a", "b")
    assert OPENAI_CHAT.split({"modalities": ["text"]}, declared=())[1] == ("modalities",)

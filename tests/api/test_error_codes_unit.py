"""pydantic's error types and the framework's HTTP errors map to OpenAI's error codes."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from mlx_manager.api.errors import param_path, validation_code, validation_error
from mlx_manager.errors import InvalidRequest, shorten
from mlx_manager.protocols.openai_schemas import ChatCompletionRequest


@pytest.mark.parametrize(
    ("kind", "value", "code"),
    [
        ("missing", None, "missing_required_parameter"),
        ("string_type", 3, "invalid_type"),
        ("int_parsing", "x", "invalid_type"),
        ("model_attributes_type", 3, "invalid_type"),
        ("literal_error", "wizard", "invalid_value"),
        ("union_tag_invalid", {"type": "x"}, "invalid_value"),
        ("too_short", [], "empty_array"),
        ("too_long", [1] * 9, "array_above_max_length"),
        ("string_too_long", "x" * 99, "string_above_max_length"),
        ("greater_than_equal", -5, "integer_below_min_value"),
        ("less_than_equal", 3.5, "decimal_above_max_value"),
        ("string_unicode", "\ud800", "invalid_unicode"),
    ],
)
def test_validation_codes(kind: str, value: object, code: str) -> None:
    assert validation_code(kind, value) == code


def test_an_invalid_request_always_has_a_code() -> None:
    assert InvalidRequest("bad").code == "invalid_value"
    assert InvalidRequest("bad", code="invalid_json").code == "invalid_json"


def test_shorten_cuts_long_input_with_an_ellipsis() -> None:
    assert shorten("abc") == "abc" and shorten("x" * 256) == "x" * 256
    assert shorten("x" * 1_000_000) == "x" * 255 + "…"


class _Named(BaseModel):
    """Parameter names that begin like pydantic's union labels ("str", "int")."""

    stream: bool | None = None
    strict: bool | None = None
    interval: int | None = None
    internal: str | list[str] | None = None


def _param(model: type[BaseModel], body: dict[str, object]) -> str | None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    errors = [{**e, "loc": ("body", *e["loc"])} for e in info.value.errors()]
    return validation_error(RequestValidationError(errors)).param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"stream": "maybe"}, "stream"),
        ({"strict": "maybe"}, "strict"),
        ({"interval": "soon"}, "interval"),
        ({"internal": 5}, "internal"),  # tried as str, then as list[str]: both labels dropped
    ],
)
def test_parameter_names_that_begin_like_type_labels_are_kept(
    body: dict[str, object], param: str
) -> None:
    assert _param(_Named, body) == param


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"stream": "maybe"}, "stream"),
        ({"stop": 5}, "stop"),
        ({"priority": "x"}, "priority"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "strict": "x"}}]},
            "tools.0.function.strict",
        ),
    ],
)
def test_chat_request_errors_name_the_parameter(extra: dict[str, object], param: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    assert _param(ChatCompletionRequest, body) == param


def test_union_labels_are_dropped_whole() -> None:
    loc = (
        "body",
        "messages",
        0,
        "content",
        "list[tagged-union[A,B]]",
        0,
        "function-after[f(), str]",
    )
    assert param_path(loc) == ["messages", "0", "content", "0"]
    assert param_path(("body", "str", "int", "strings", "integer")) == ["strings", "integer"]

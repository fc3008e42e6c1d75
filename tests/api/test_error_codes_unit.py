"""pydantic's error types and the framework's HTTP errors map to OpenAI's error codes."""

from __future__ import annotations

import pytest

from mlx_manager.api.errors import validation_code
from mlx_manager.errors import InvalidRequest, shorten


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

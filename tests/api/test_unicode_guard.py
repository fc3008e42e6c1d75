"""Lone UTF-16 surrogates: found in any string or key, named by their parameter path."""

from __future__ import annotations

import json

from mlx_manager.api.unicode_guard import lone_surrogate_path, surrogate_error


def test_path_names_the_first_string_with_a_surrogate() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "ok"}, {"content": "a\ud800"}]}
    assert lone_surrogate_path(body) == "messages.1.content"
    assert lone_surrogate_path({"stop": ["x", "\udfff"]}) == "stop.1"
    assert lone_surrogate_path({"chat_template_kwargs": {"\ud800": 1}}) == "chat_template_kwargs"
    assert lone_surrogate_path({"model": "m", "n": 1, "x": None}) is None


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    deep: object = "\ud800"
    for _ in range(5000):
        deep = [deep]
    assert lone_surrogate_path({"a": deep}) == "a" + ".0" * 5000


def test_escaped_and_raw_surrogates_are_400() -> None:
    escaped = surrogate_error(b'{"messages":[{"role":"user","content":"\\ud800"}]}')
    assert escaped is not None
    assert (escaped.status, escaped.param, escaped.code) == (
        400,
        "messages.0.content",
        "invalid_unicode",
    )
    raw = surrogate_error(b'{"system":"\xed\xa0\x80"}')  # a surrogate encoded as UTF-8 bytes
    assert raw is not None and raw.param == "system"


def test_valid_text_and_invalid_json_pass_through() -> None:
    assert surrogate_error(json.dumps({"content": "\U0001f600"}).encode()) is None  # a pair
    assert surrogate_error('{"content": "\U0001f600 ü"}'.encode()) is None
    assert surrogate_error(b'{"content": "\\\\ud800"}') is None  # an escaped backslash
    assert surrogate_error(b'{"content": "\\ud800"') is None  # not JSON: the framework's 400
    too_deep = b'{"a":' + b"[" * 100_000 + b'"\\ud800"' + b"]" * 100_000 + b"}"
    assert surrogate_error(too_deep) is None  # past json's recursion limit: its own 400

"""The raw-bytes scan of a JSON body: model-name candidates and byte counts, whatever the
chunking, without parsing the body."""

from __future__ import annotations

import json

import pytest

from mlx_manager.api.body_scan import BodyScan


def scan(body: bytes, chunk: int | None = None) -> BodyScan:
    result = BodyScan()
    step = chunk or max(len(body), 1)
    for at in range(0, len(body), step):
        result.feed(body[at : at + step])
    result.finish()
    return result


def test_top_level_and_nested_model_keys_are_candidates() -> None:
    body = {
        "model": "tiny",
        "metadata": {"model": "gpt-4o"},
        "messages": [{"role": "user", "content": 'say "model": "fake" please'}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "pick",
                    "parameters": {
                        "type": "object",
                        "properties": {"model": {"type": "string", "enum": ["model"]}},
                        "required": ["model"],
                    },
                },
            }
        ],
    }
    found = scan(json.dumps(body).encode())
    # A quote inside a string is escaped, so the content's "model": "fake" never matches; a
    # schema property named model has an object value and "model" as a value has no colon.
    assert found.names == {"tiny", "gpt-4o"} and not found.ambiguous


def test_a_tool_calls_arguments_are_an_escaped_string() -> None:
    call = {"name": "f", "arguments": json.dumps({"model": "other"})}
    body = {"model": "tiny", "messages": [{"role": "assistant", "tool_calls": [call]}]}
    assert scan(json.dumps(body).encode()).names == {"tiny"}


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, 1000, 2200, 5000])
def test_chunking_never_changes_the_result(chunk: int) -> None:
    text = "é x\\y " * 700  # multi-byte characters, escapes and spaces
    body = json.dumps(
        {"messages": [{"role": "user", "content": text}], "model": "tiny", "user": "u"},
        ensure_ascii=False,
        indent=2,
    ).encode()
    whole, cut = scan(body), scan(body, chunk)
    assert cut.names == whole.names == {"tiny"}
    assert not cut.ambiguous
    assert (cut.size, cut.backslashes, cut.high_bytes, cut.whitespace) == (
        len(body),
        body.count(b"\\"),
        sum(b >= 0x80 for b in body),
        sum(body.count(c) for c in (b" ", b"\t", b"\r", b"\n")),
    )


def test_a_name_cut_across_many_chunks_is_read_whole() -> None:
    body = b'{"x": "' + b"a" * 4000 + b'", "model"   :\n  "my-\\u00e9-model", "y": 1}'
    for chunk in (1, 3, 4001, 4010, 4020):
        assert scan(body, chunk).names == {"my-é-model"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"mod\\u0065l": "gpt", "model": "tiny"}',  # json.loads reads the first as "model"
        b'{"model": "tiny", "x": "' + b"a" * 3000 + b'", "\\u006dodel": "gpt"}',
        '{"model": "tiny"}'.encode("utf-16-le"),  # json.loads detects UTF-16
        b'\xff\xfe{\x00"\x00',
        b'{"model":' + b" " * 100 + b'"tiny"}',  # more whitespace than followed
        b'{"model": "' + b"n" * 2000 + b'"}',  # longer than any name
        b'{"model": "bad \\q escape"}',
    ],
)
def test_what_the_bytes_cannot_show_makes_the_scan_ambiguous(body: bytes) -> None:
    assert scan(body).ambiguous
    assert scan(body, 3).ambiguous


def test_non_string_values_and_no_key_give_no_name() -> None:
    assert scan(b'{"model": null, "n": 1}').names == set()
    assert scan(b'{"model": {"type": "string"}}').names == set()
    assert scan(b'{"messages": []}').names == set()
    assert not scan(b'{"model": 5}').ambiguous


def test_more_names_than_any_body_needs_are_ambiguous() -> None:
    body = json.dumps({f"k{i}": {"model": f"m{i}"} for i in range(17)}).encode()
    assert scan(body).ambiguous


@pytest.mark.parametrize("quotes", [0, 30, 63, 64, 65, 500])
def test_keys_after_many_quotes_are_found(quotes: int) -> None:
    """Quotes are hopped one by one while few, then searched for the key (code, quoting)."""
    body = {"messages": [{"role": "user", "content": '"' * quotes}], "model": "tiny"}
    for chunk in (None, 100, 4096):
        assert scan(json.dumps(body).encode(), chunk).names == {"tiny"}

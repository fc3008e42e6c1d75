"""The output parser on each family's tool-call format and on reasoning, fed in small pieces."""

from __future__ import annotations

import json

import pytest
from mlx_lm.tool_parsers import pythonic, qwen3_coder

from mlx_manager.frontend.output_parser import OutputParser
from mlx_manager.models.tool_formats import _FAMILY_NATIVE as NATIVE
from mlx_manager.models.tool_formats import HERMES_FALLBACK, ToolFormat, parse_llama3_json
from mlx_manager.types import FinishReason, GenerationEvent, ToolCall, Usage

WEATHER = {"city": "Paris"}
PYTHONIC = ToolFormat(
    "pythonic", pythonic.tool_call_start, pythonic.tool_call_end, pythonic.parse_tool_call, True
)
QWEN3_CODER = ToolFormat(
    "qwen3_coder",
    qwen3_coder.tool_call_start,
    qwen3_coder.tool_call_end,
    qwen3_coder.parse_tool_call,
    True,
)


def run(
    parser: OutputParser, text: str, piece: int = 3, reason: FinishReason = FinishReason.STOP
) -> list[GenerationEvent]:
    """Feed `text` in `piece`-character events, the last one finishing."""
    chunks = [text[i : i + piece] for i in range(0, len(text), piece)] or [""]
    events = [GenerationEvent("r", c) for c in chunks[:-1]]
    events.append(GenerationEvent("r", chunks[-1], finish_reason=reason, usage=Usage(1, 1)))
    return [parser.feed(e) for e in events]


def joined(events: list[GenerationEvent]) -> tuple[str, str, list[ToolCall], FinishReason | None]:
    return (
        "".join(e.text for e in events),
        "".join(e.reasoning for e in events),
        [c for e in events for c in e.tool_calls],
        events[-1].finish_reason,
    )


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        (
            HERMES_FALLBACK,
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        ),
        (NATIVE["llama"], '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
        (
            NATIVE["mistral"],
            '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        ),
        (PYTHONIC, '<|tool_call_start|>[get_weather(city="Paris")]<|tool_call_end|>'),
        (
            QWEN3_CODER,
            "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
        ),
    ],
    ids=["hermes", "llama3_json", "mistral", "pythonic", "qwen3_coder"],
)
@pytest.mark.parametrize("piece", [1, 4, 1000])
def test_each_family_format(fmt: ToolFormat, text: str, piece: int) -> None:
    events = run(OutputParser(fmt), text, piece)
    content, reasoning, calls, reason = joined(events)
    assert content == "" and reasoning == ""
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", WEATHER)]
    assert calls[0].id.startswith("call_")
    assert reason is FinishReason.TOOL_CALLS
    ((call_id, name, arguments),) = pieces(events)
    assert (call_id, name, json.loads(arguments)) == (calls[0].id, "get_weather", WEATHER)


def test_content_before_and_several_calls() -> None:
    text = (
        "Let me check.\n<tool_call>\n"
        '{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {"x": 1}}\n</tool_call>\n'
    )
    events = run(OutputParser(HERMES_FALLBACK), text, 2)
    content, _, calls, reason = joined(events)
    assert content == "Let me check.\n"
    assert [c.name for c in calls] == ["a", "b"]
    assert reason is FinishReason.TOOL_CALLS
    # the first call is reported as soon as its end marker arrives, not at the end
    assert events.index(next(e for e in events if e.tool_calls)) < len(events) - 1


def test_plain_text_with_tools_is_content() -> None:
    content, _, calls, reason = joined(
        run(OutputParser(HERMES_FALLBACK), "The weather is < 20 degrees.", 2)
    )
    assert content == "The weather is < 20 degrees." and calls == []
    assert reason is FinishReason.STOP


def test_a_call_cut_short_is_a_call_with_what_was_generated() -> None:
    text = '<tool_call>\n{"name": "a", "arguments": {"city": "Par'
    events = run(OutputParser(HERMES_FALLBACK), text, reason=FinishReason.LENGTH)
    content, _, calls, reason = joined(events)
    assert content == "" and reason is FinishReason.LENGTH
    assert [(c.name, c.arguments) for c in calls] == [("a", '{"city": "Par')]
    assert pieces(events) == [(calls[0].id, "a", '{"city": "Par')]


def test_call_markup_cut_before_the_name_is_dropped() -> None:
    for text in ('<tool_call>\n{"na', "<tool_call>"):
        content, _, calls, _ = joined(
            run(OutputParser(HERMES_FALLBACK), text, reason=FinishReason.LENGTH)
        )
        assert content == "" and calls == []


def test_a_finished_block_that_is_no_call_stays_content() -> None:
    text = "<tool_call>not json</tool_call>"
    content, _, calls, _ = joined(run(OutputParser(HERMES_FALLBACK), text))
    assert content == "<tool_call>not json" and calls == []


def pieces(events: list[GenerationEvent]) -> list[tuple[str | None, str | None, str]]:
    """Each call's (id, name, arguments) as its streamed pieces give it."""
    calls: dict[int, list[str | None]] = {}
    for event in events:
        for piece in event.tool_call_deltas:
            if piece.name is not None:
                assert piece.index not in calls, "a call opened twice"
                calls[piece.index] = [piece.id, piece.name, ""]
            calls[piece.index][2] = str(calls[piece.index][2]) + piece.arguments
    return [(c[0], c[1], str(c[2])) for _, c in sorted(calls.items())]


@pytest.mark.parametrize("fmt", [HERMES_FALLBACK, NATIVE["llama"]], ids=["hermes", "llama3_json"])
def test_arguments_stream_while_they_decode(fmt: ToolFormat) -> None:
    key = "arguments" if fmt.start else "parameters"
    body = f'{{"name": "get_weather", "{key}": {{"city": "Paris", "days": [1, 2], "q": "a\\"}}"}}}}'
    text = f"<tool_call>\n{body}\n</tool_call>" if fmt.start else body
    events = run(OutputParser(fmt), text, piece=1)
    (call,) = joined(events)[2]
    ((call_id, name, arguments),) = pieces(events)
    assert (call_id, name) == (call.id, "get_weather")
    assert (
        json.loads(arguments)
        == json.loads(call.arguments)
        == {
            "city": "Paris",
            "days": [1, 2],
            "q": 'a"}',
        }
    )
    with_pieces = [i for i, e in enumerate(events) if e.tool_call_deltas]
    assert len(with_pieces) > 10  # piece by piece, not one lump
    assert with_pieces[0] < text.index('"Paris"')  # opened once the name was read


def test_arguments_before_the_name_and_as_a_string() -> None:
    text = (
        '<tool_call>{"arguments": {"x": 1}, "name": "a"}</tool_call>'
        '<tool_call>{"name": "b", "arguments": "{\\"y\\": 2}"}</tool_call>'
    )
    events = run(OutputParser(HERMES_FALLBACK), text, piece=2)
    calls = joined(events)[2]
    streamed = pieces(events)
    assert [(n, json.loads(a)) for _, n, a in streamed] == [("a", {"x": 1}), ("b", {"y": 2})]
    assert [i for i, _, _ in streamed] == [c.id for c in calls]


def test_llama3_plain_answer_is_content() -> None:
    content, _, calls, _ = joined(run(OutputParser(NATIVE["llama"]), "  Paris is the capital.", 2))
    assert content == "  Paris is the capital." and calls == []


def test_llama3_parallel_calls() -> None:
    assert [
        c["name"]
        for c in parse_llama3_json(
            '{"name": "a", "parameters": {}}; {"name": "b", "parameters": {}}'
        )
    ] == ["a", "b"]


@pytest.mark.parametrize("piece", [1, 5, 1000])
def test_reasoning_is_split(piece: int) -> None:
    parser = OutputParser(None, ("<think>", "</think>"))
    content, reasoning, _, _ = joined(run(parser, "<think>Paris, surely.</think>\n\nParis.", piece))
    assert (reasoning, content) == ("Paris, surely.", "Paris.")


def test_reasoning_started_by_the_prompt_then_a_call() -> None:
    parser = OutputParser(HERMES_FALLBACK, ("<think>", "</think>"), in_reasoning=True)
    text = 'Need weather.</think>\n<tool_call>\n{"name": "w", "arguments": {}}\n</tool_call>'
    content, reasoning, calls, reason = joined(run(parser, text, 2))
    assert reasoning == "Need weather." and content == "" and [c.name for c in calls] == ["w"]
    assert reason is FinishReason.TOOL_CALLS

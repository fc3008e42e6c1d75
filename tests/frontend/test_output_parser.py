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
    content, reasoning, calls, reason = joined(run(OutputParser(fmt), text, piece))
    assert content == "" and reasoning == ""
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", WEATHER)]
    assert calls[0].id.startswith("call_")
    assert reason is FinishReason.TOOL_CALLS


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


def test_cut_short_call_is_released_as_content() -> None:
    text = '<tool_call>\n{"name": "a", "argu'
    content, _, calls, reason = joined(
        run(OutputParser(HERMES_FALLBACK), text, reason=FinishReason.LENGTH)
    )
    assert calls == [] and content == text and reason is FinishReason.LENGTH


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

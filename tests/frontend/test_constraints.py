"""Constrained decoding: grammars for schemas and forced calls, and the llguidance processor."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlx.core as mx
import pytest
from mlx_lm.utils import load_tokenizer

from mlx_manager.errors import InvalidRequest, UnsupportedParameter
from mlx_manager.frontend.constraints import build_constraint, closed, llg_tokenizer
from mlx_manager.models.families import CHATML
from mlx_manager.models.tool_formats import HERMES_FALLBACK, ToolFormat
from mlx_manager.runner.grammar import GrammarProcessor
from mlx_manager.types import (
    ChatMessage,
    GenerateRequest,
    ResponseFormat,
    SamplingParams,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
)

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


@pytest.fixture(scope="module")
def model(smollm2_dir: Path) -> Any:
    tokenizer = load_tokenizer(smollm2_dir)
    stops = CHATML.stop_token_ids(tokenizer)
    return SimpleNamespace(tokenizer=tokenizer, stop_token_ids=stops, model_id="smol")


def request(**fields: Any) -> GenerateRequest:
    return GenerateRequest(
        "r", "m", SamplingParams(), messages=(ChatMessage("user", "hi"),), **fields
    )


def drive(
    model: Any, grammar_request: GenerateRequest, text: str, fmt: ToolFormat | None = None
) -> GrammarProcessor:
    constraint = build_constraint(model, grammar_request, fmt)
    assert constraint is not None
    processor = GrammarProcessor(constraint, llg_tokenizer(model))
    prompt = [1, 2, 3]
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    vocab = len(model.tokenizer)
    for i in range(len(ids) + 1):
        logits = processor(mx.array(prompt + ids[:i]), mx.zeros((1, vocab)))
        if i < len(ids):
            assert logits[0, ids[i]].item() == 0.0, f"token {i} of {text!r} was masked"
    return processor


def allowed_after(processor: GrammarProcessor, vocab: int) -> set[int]:
    return {int(i) for i in processor.allowed_mask(vocab).nonzero()[0]}


def test_schema_output_ends_on_eos(model: Any) -> None:
    processor = drive(model, request(response_format=ResponseFormat(SCHEMA)), '{"a":12}')
    assert allowed_after(processor, len(model.tokenizer)) <= set(model.stop_token_ids)


def test_compact_json_only(model: Any) -> None:
    constraint = build_constraint(model, request(response_format=ResponseFormat(SCHEMA)), None)
    assert constraint is not None
    processor = GrammarProcessor(constraint, llg_tokenizer(model))
    processor(mx.array([1]), mx.zeros((1, len(model.tokenizer))))
    space = model.tokenizer.encode(" ", add_special_tokens=False)[0]
    assert space not in allowed_after(processor, len(model.tokenizer))


def test_forced_hermes_call_and_mask_padding(model: Any) -> None:
    tools = (ToolSpec("get_weather", "", SCHEMA), ToolSpec("other", "", {}))
    forced = request(tools=tools, tool_choice=ToolChoice(ToolChoiceMode.NAMED, "get_weather"))
    processor = drive(
        model,
        forced,
        '<tool_call>\n{"name":"get_weather","arguments":{"a":1}}\n</tool_call>',
        HERMES_FALLBACK,
    )
    assert allowed_after(processor, len(model.tokenizer)) <= set(model.stop_token_ids)
    assert processor.allowed_mask(len(model.tokenizer) + 64)[-64:].sum() == 0


def test_auto_with_schema_allows_answer_or_call(model: Any) -> None:
    both = request(tools=(ToolSpec("f", "", SCHEMA),), response_format=ResponseFormat(SCHEMA))
    drive(model, both, '{"a":1}', HERMES_FALLBACK)
    drive(
        model, both, '<tool_call>\n{"name":"f","arguments":{"a":1}}\n</tool_call>', HERMES_FALLBACK
    )


def test_no_constraint_for_plain_requests(model: Any) -> None:
    assert build_constraint(model, request(), None) is None
    assert build_constraint(model, request(tools=(ToolSpec("f"),)), HERMES_FALLBACK) is None


def test_bad_schema_is_400(model: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        build_constraint(
            model,
            request(response_format=ResponseFormat({"type": "string", "format": "nope"})),
            None,
        )
    assert info.value.param == "response_format"


def test_forced_call_without_grammar_is_400(model: Any) -> None:
    fmt = ToolFormat("glm47", "<tool_call>", "</tool_call>", lambda t, _: {}, True, None)
    forced = request(tools=(ToolSpec("f"),), tool_choice=ToolChoice(ToolChoiceMode.REQUIRED))
    with pytest.raises(UnsupportedParameter, match="glm47"):
        build_constraint(model, forced, fmt)


def test_closed_objects() -> None:
    schema = {
        "type": "object",
        "properties": {
            "properties": {"type": "object", "properties": {"x": {}}},
            "open": {"type": "object", "properties": {}, "additionalProperties": True},
        },
        "$defs": {"d": {"properties": {"y": {}}}},
        "anyOf": [{"properties": {}}],
    }
    out = closed(schema)
    assert out["additionalProperties"] is False
    assert out["properties"]["properties"]["additionalProperties"] is False
    assert "additionalProperties" not in out["properties"]  # the mapping of names is no schema
    assert out["properties"]["open"]["additionalProperties"] is True
    assert out["$defs"]["d"]["additionalProperties"] is False
    assert out["anyOf"][0]["additionalProperties"] is False
    assert json.dumps(schema).count("additionalProperties") == 1  # the input is untouched

"""Structured output and forced tool calls -> an llguidance grammar (a Constraint).

Why llguidance: it works on any logits (we apply its token mask with ``mx.where``), it is a
small Rust wheel with no dependencies (abi3 wheels for Linux x86_64 and macOS arm64), it
computes masks in well under a millisecond, supports most of JSON Schema and lets a Lark
grammar embed JSON schemas (``%json {...}``), which is how forced tool calls in each family's
format are written. xgrammar needs torch (and triton on Linux); outlines builds a regex index
per schema up front and pulls in far more.

JSON is generated compact (no free whitespace): small models otherwise pad with newlines until
max_tokens runs out.
"""

from __future__ import annotations

import json
from typing import Any

from llguidance import LLMatcher, LLTokenizer

from mlx_manager.errors import InvalidRequest, UnsupportedParameter
from mlx_manager.models.card import ModelCard
from mlx_manager.models.grammar_tokenizer import grammar_tokenizer
from mlx_manager.models.tool_formats import HERMES, LLAMA3_JSON, MISTRAL, ToolFormat
from mlx_manager.types import Constraint, GenerateRequest, ToolChoiceMode, ToolSpec

_COMPACT = {"whitespace_flexible": False}
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def llg_tokenizer(model: ModelCard) -> LLTokenizer:
    """The model's llguidance tokenizer (built once per model, about a second)."""
    return grammar_tokenizer(model.tokenizer, model.stop_token_ids)


def build_constraint(
    model: ModelCard, request: GenerateRequest, fmt: ToolFormat | None
) -> Constraint | None:
    """The grammar this request must follow, or None; a 400 if it cannot be enforced."""
    lark, param = _lark(model, request, fmt)
    if lark is None:
        return None
    tokenizer = llg_tokenizer(model)
    grammar = LLMatcher.grammar_from_lark(lark)
    error = LLMatcher.validate_grammar(grammar, tokenizer)
    if error:
        raise InvalidRequest(f"cannot enforce this {param}: {error}", param=param)
    return Constraint(grammar)


def _lark(
    model: ModelCard, request: GenerateRequest, fmt: ToolFormat | None
) -> tuple[str | None, str]:
    mode = request.tool_choice.mode
    forced = request.tools and mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.NAMED)
    answer = _json_rule(request)
    if forced:
        assert fmt is not None
        return f"start: {_calls_rule(model, request, fmt)}", "tool_choice"
    if answer is None:
        return None, ""
    if request.tools and mode is ToolChoiceMode.AUTO:
        assert fmt is not None
        return f"start: {answer} | {_calls_rule(model, request, fmt)}", "response_format"
    return f"start: {answer}", "response_format"


def _json_rule(request: GenerateRequest) -> str | None:
    if request.response_format is None:
        return None
    schema = dict(request.response_format.schema or {"type": "object"})
    return _json(schema)


def _json(schema: dict[str, Any]) -> str:
    guidance = {**_COMPACT, **(schema.get("x-guidance") or {})}
    return "%json " + json.dumps({**closed(schema), "x-guidance": guidance})


def closed(schema: Any) -> Any:
    """Objects that list ``properties`` but say nothing of others get no others (as OpenAI's
    strict mode requires): the output still validates against the schema as given, and a
    small model cannot wander into inventing keys."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: closed(sub) for name, sub in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [closed(sub) for sub in out[key]]
    for key in ("items", "additionalProperties", "not", "contains"):
        if isinstance(out.get(key), dict):
            out[key] = closed(out[key])
    open_keys = ("additionalProperties", "patternProperties")
    if "properties" in out and not any(key in out for key in open_keys):
        out["additionalProperties"] = False
    return out


def _chosen_tools(request: GenerateRequest) -> list[ToolSpec]:
    if request.tool_choice.mode is ToolChoiceMode.NAMED:
        return [t for t in request.tools if t.name == request.tool_choice.name]
    return list(request.tools)


def _call_schema(tools: list[ToolSpec], args_key: str) -> dict[str, Any]:
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.name},
                args_key: dict(t.parameters) or {"type": "object"},
            },
            "required": ["name", args_key],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _calls_rule(model: ModelCard, request: GenerateRequest, fmt: ToolFormat) -> str:
    tools = _chosen_tools(request)
    # One forced call unless the client asked for parallel calls: a small model would
    # otherwise repeat calls until max_tokens.
    many = request.parallel_tool_calls is True
    if fmt.grammar == HERMES:
        schema = _json(_call_schema(tools, "arguments"))
        call = f'("{_esc(fmt.start)}\\n" {schema} "\\n{_esc(fmt.end)}")'
        return f'{call} ("\\n" {call})*' if many else call
    if fmt.grammar == LLAMA3_JSON:
        return _json(_call_schema(tools, "parameters"))
    if fmt.grammar == MISTRAL:
        items: dict[str, Any] = {
            "type": "array",
            "items": _call_schema(tools, "arguments"),
            "minItems": 1,
        }
        if not many:
            items["maxItems"] = 1
        return f"{_token_literal(model, fmt.start)} {_json(items)}"
    raise UnsupportedParameter(
        f"tool_choice {request.tool_choice.mode.value!r} is not supported for this model's tool "
        f"format ({fmt.name}); use tool_choice 'auto'",
        param="tool_choice",
    )


def _esc(text: str) -> str:
    return json.dumps(text)[1:-1]


def _token_literal(model: ModelCard, text: str) -> str:
    """A marker as Lark: a special token by id (text cannot match it), else a string."""
    token_id = model.tokenizer.get_vocab().get(text)
    if token_id is not None and llg_tokenizer(model).is_special_token(token_id):
        return f"<[{token_id}]>"
    return json.dumps(text)

"""Golden JSON: each dialect's wire shapes, pinned (requests in, replies and streams out).

Each file in golden/ holds an ``input`` and the ``expected`` output of one converter. Run with
``UPDATE_GOLDEN=1`` to rewrite the expectations after an intended change, then review the diff.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlx_manager.protocols import anthropic_convert, openai_convert
from mlx_manager.protocols.anthropic_schemas import CountTokensRequest, MessagesRequest
from mlx_manager.protocols.anthropic_stream import MessageStreamEncoder
from mlx_manager.protocols.openai_schemas import ChatCompletionRequest
from mlx_manager.protocols.openai_stream import ChatStreamEncoder
from mlx_manager.types import FinishReason, GenerationEvent, ToolCall, ToolCallDelta, Usage

GOLDEN = Path(__file__).parent / "golden"


def plain(value: Any) -> Any:
    """Internal dataclasses as JSON-able data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def events_of(items: list[dict[str, Any]]) -> list[GenerationEvent]:
    out = []
    index = itertools.count()  # of each call in the reply
    for item in items:
        calls = [ToolCall(**c) for c in item.get("tool_calls", [])]
        reason = item.get("finish_reason")
        usage = item.get("usage")
        out.append(
            GenerationEvent(
                "req",
                text=item.get("text", ""),
                reasoning=item.get("reasoning", ""),
                tool_calls=tuple(calls),
                # Streams read the pieces: here each call in one piece, as a parsed call is.
                tool_call_deltas=tuple(
                    ToolCallDelta(next(index), c.arguments, c.id, c.name) for c in calls
                ),
                finish_reason=FinishReason(reason) if reason else None,
                usage=Usage(*usage) if usage else None,
                stop_sequence=item.get("stop_sequence"),
            )
        )
    return out


def openai_request(data: dict[str, Any]) -> Any:
    return plain(
        openai_convert.chat_request_to_internal(ChatCompletionRequest.model_validate(data), "req")
    )


def anthropic_request(data: dict[str, Any]) -> Any:
    return plain(
        anthropic_convert.messages_request_to_internal(MessagesRequest.model_validate(data), "req")
    )


def anthropic_count(data: dict[str, Any]) -> Any:
    return plain(
        anthropic_convert.prompt_to_internal(CountTokensRequest.model_validate(data), "req")
    )


def openai_stream(data: list[dict[str, Any]]) -> Any:
    encoder = ChatStreamEncoder("chatcmpl-1", "m", 1700000000, include_usage=True)
    return encoder.start() + [c for e in events_of(data) for c in encoder.feed(e)]


def anthropic_stream(data: list[dict[str, Any]]) -> Any:
    encoder = MessageStreamEncoder("msg_1", "m", 12)
    return encoder.start() + [c for e in events_of(data) for c in encoder.feed(e)]


def openai_reply(data: list[dict[str, Any]]) -> Any:
    events = events_of(data)
    last = events[-1]
    assert last.usage is not None
    return openai_convert.chat_completion(
        "chatcmpl-1",
        "m",
        1700000000,
        "".join(e.text for e in events),
        last.finish_reason,
        last.usage,
        None,
        reasoning="".join(e.reasoning for e in events),
        calls=[c for e in events for c in e.tool_calls],
    )


def anthropic_reply(data: list[dict[str, Any]]) -> Any:
    events = events_of(data)
    last = events[-1]
    assert last.usage is not None
    content = anthropic_convert.content_blocks(
        "".join(e.text for e in events),
        "".join(e.reasoning for e in events),
        [c for e in events for c in e.tool_calls],
    )
    return anthropic_convert.message(
        "msg_1", "m", content, last.finish_reason, last.stop_sequence, last.usage
    )


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "openai_request": openai_request,
    "anthropic_request": anthropic_request,
    "anthropic_count": anthropic_count,
    "openai_stream": openai_stream,
    "anthropic_stream": anthropic_stream,
    "openai_reply": openai_reply,
    "anthropic_reply": anthropic_reply,
}


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    actual = json.loads(json.dumps(CONVERTERS[case["converter"]](case["input"])))
    if os.environ.get("UPDATE_GOLDEN"):
        case["expected"] = actual
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
    assert actual == case["expected"]

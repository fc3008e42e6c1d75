"""Stop sequences are bounded in count and length in both dialects."""

from __future__ import annotations

import pytest

from mlx_manager.errors import InvalidRequest
from mlx_manager.protocols import anthropic_convert, openai_convert
from mlx_manager.protocols.anthropic_schemas import MessagesRequest
from mlx_manager.protocols.openai_schemas import ChatCompletionRequest
from mlx_manager.protocols.stops import (
    ANTHROPIC_MAX_STOPS,
    MAX_STOP_CHARS,
    OPENAI_MAX_STOPS,
    checked_stops,
)


def openai(stop: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": stop}
    )


def anthropic(stops: list[str]) -> MessagesRequest:
    return MessagesRequest.model_validate(
        {
            "model": "m",
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "x"}],
            "stop_sequences": stops,
        }
    )


def test_within_the_limits_pass() -> None:
    stops = ["a"] * OPENAI_MAX_STOPS
    assert openai_convert.chat_request_to_internal(openai(stops), "r").sampling.stop == tuple(stops)
    many = [str(i) for i in range(ANTHROPIC_MAX_STOPS)]
    sampling = anthropic_convert.messages_request_to_internal(anthropic(many), "r").sampling
    assert sampling.stop == tuple(many)
    assert checked_stops(["x" * MAX_STOP_CHARS], "stop", 1) == ("x" * MAX_STOP_CHARS,)


@pytest.mark.parametrize(
    ("stops", "code"),
    [
        (["a"] * (OPENAI_MAX_STOPS + 1), "array_above_max_length"),
        (["a"] * 100_000, "array_above_max_length"),
        (["x" * (MAX_STOP_CHARS + 1)], "string_above_max_length"),
        ([""], "invalid_value"),
    ],
)
def test_openai_stop_over_the_limits_is_400(stops: list[str], code: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        openai_convert.chat_request_to_internal(openai(stops), "r")
    assert (info.value.param, info.value.code) == ("stop", code)


def test_anthropic_stop_sequences_over_the_limit_is_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        anthropic_convert.messages_request_to_internal(anthropic(["a"] * 100_000), "r")
    assert info.value.param == "stop_sequences" and "at most 64" in info.value.message

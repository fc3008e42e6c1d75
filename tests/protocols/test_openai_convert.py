"""Pure OpenAI <-> internal conversions."""

from __future__ import annotations

import pytest

from mlx_manager.errors import InvalidRequest, UnsupportedParameter
from mlx_manager.protocols import openai_convert as convert
from mlx_manager.protocols.openai_schemas import ChatCompletionRequest, CompletionRequest
from mlx_manager.types import FinishReason, TokenLogprob, Usage


def chat(**fields: object) -> ChatCompletionRequest:
    base: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return ChatCompletionRequest.model_validate({**base, **fields})


def test_sampling_defaults_follow_openai() -> None:
    request = convert.chat_request_to_internal(chat(), "r1")
    assert request.sampling.temperature == 1.0
    assert request.sampling.top_p == 1.0
    assert request.sampling.max_tokens is None
    assert request.messages is not None and request.messages[0].content == "hi"


def test_max_completion_tokens_wins() -> None:
    request = convert.chat_request_to_internal(chat(max_tokens=5, max_completion_tokens=7), "r")
    assert request.sampling.max_tokens == 7


def test_content_parts_are_joined() -> None:
    body = chat(
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ]
    )
    request = convert.chat_request_to_internal(body, "r")
    assert request.messages is not None and request.messages[0].content == "a\nb"


def test_stop_and_logit_bias() -> None:
    request = convert.chat_request_to_internal(chat(stop="x", logit_bias={"5": -1}), "r")
    assert request.sampling.stop == ("x",)
    assert request.sampling.logit_bias == ((5, -1.0),)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 3}, "n"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice.function.name",
        ),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ],
)
def test_unsupported_are_named(fields: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        convert.chat_request_to_internal(chat(**fields), "r")
    assert info.value.param == param


def test_image_parts_become_image_refs_in_order() -> None:
    body = chat(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                    },
                    {"type": "text", "text": "please"},
                ],
            }
        ]
    )
    message = convert.chat_request_to_internal(body, "r").messages[0]  # type: ignore[index]
    assert message.content == "Compare\nplease"
    assert [p if isinstance(p, str) else p.url for p in message.parts] == [
        "Compare",
        "data:image/png;base64,AA",
        "https://x.test/a.png",
        "please",
    ]
    assert message.images[1].param == "messages[0].content[2].image_url"


def test_text_only_parts_keep_no_parts() -> None:
    body = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    message = convert.chat_request_to_internal(body, "r").messages[0]  # type: ignore[index]
    assert message.content == "hi" and message.parts == ()


@pytest.mark.parametrize(
    ("message", "param"),
    [
        (
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]},
            "messages[0].content[0]",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"uri": "x"}}]},
            "messages[0].content[0].image_url",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": 3}}]},
            "messages[0].content[0].image_url",
        ),
        (
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_bad_image_parts_are_named(message: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        convert.chat_request_to_internal(chat(messages=[message]), "r")
    assert info.value.param == param


def test_completion_prompt_forms() -> None:
    text = CompletionRequest.model_validate({"model": "m", "prompt": ["hello"]})
    assert convert.completion_request_to_internal(text, "r").prompt_text == "hello"
    ids = CompletionRequest.model_validate({"model": "m", "prompt": [1, 2, 3]})
    assert convert.completion_request_to_internal(ids, "r").prompt_tokens == (1, 2, 3)
    many = CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"]})
    with pytest.raises(UnsupportedParameter):
        convert.completion_request_to_internal(many, "r")


def test_chat_completion_shape() -> None:
    body = convert.chat_completion("id", "m", 1, "hi", FinishReason.LENGTH, Usage(3, 2), None)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_completion_logprobs_offsets() -> None:
    entries = [TokenLogprob("ab", 1, -0.5, (("ab", 1, -0.5),)), TokenLogprob("c", 2, -1.0)]
    body = convert.completion_logprobs(entries, 4)
    assert body["text_offset"] == [4, 6]
    assert body["top_logprobs"] == [{"ab": -0.5}, {}]

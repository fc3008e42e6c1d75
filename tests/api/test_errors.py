"""Error cases over HTTP: the OpenAI envelope, 400 not 422, 404, 413, context length."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import MODEL, TEST_BODY_LIMIT
from tests.fixtures.server import ServerProcess

HI = [{"role": "user", "content": "Hi"}]


def _assert_envelope(reply: httpx.Response, status: int) -> dict[str, object]:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert reply.headers.get("x-request-id")
    return error  # type: ignore[no-any-return]


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nope", messages=HI, max_tokens=1)
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-nope", prompt="x", max_tokens=1)


def test_unknown_parameter_is_named(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=HI, max_tokens=1, extra_body={"frobnicate": True}
        )
    assert info.value.body["param"] == "frobnicate"  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools.0.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "string", "format": "nope"}},
                }
            },
            "response_format",
        ),
        ({"temperature": 3}, "temperature"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stop": [""]}, "stop"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_parameters_are_400(
    server: ServerProcess, extra: dict[str, object], param: str
) -> None:
    body = {"model": MODEL, "messages": HI, "max_tokens": 1, **extra}
    error = _assert_envelope(httpx.post(f"{server.base_url}/v1/chat/completions", json=body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_validation_is_400_not_422(server: ServerProcess) -> None:
    url = f"{server.base_url}/v1/chat/completions"
    _assert_envelope(httpx.post(url, json={"model": MODEL}), 400)
    _assert_envelope(
        httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    _assert_envelope(
        httpx.post(url, json={"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}),
        400,
    )
    _assert_envelope(
        httpx.post(
            url,
            json={
                "model": MODEL,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:,"}}],
                    }
                ],
                "max_tokens": 1,
            },
        ),
        400,
    )


def test_context_length_exceeded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HI, max_tokens=9000)
    assert info.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    assert info.value.body["message"].startswith(  # type: ignore[index]
        "This model's maximum context length is 8192 tokens"
    )


def test_prompt_longer_than_context(client: openai.OpenAI) -> None:
    long_prompt = "hello " * 9000  # ~9000 tokens, under the body limit
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt=long_prompt, max_tokens=None)
    assert info.value.body["code"] == "context_length_exceeded"  # type: ignore[index]


def test_body_over_limit_is_413(server: ServerProcess) -> None:
    big = "x" * (TEST_BODY_LIMIT + 1)
    reply = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": big}]},
    )
    error = _assert_envelope(reply, 413)
    assert error["code"] == "request_too_large"


def test_chunked_body_over_limit_is_413(server: ServerProcess) -> None:
    def body():  # type: ignore[no-untyped-def]
        yield b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "'
        for _ in range(TEST_BODY_LIMIT // 1000 + 1):
            yield b"x" * 1000
        yield b'"}]}'

    reply = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        content=body(),
        headers={"content-type": "application/json"},
    )
    _assert_envelope(reply, 413)


def test_unknown_route_is_404_envelope(server: ServerProcess) -> None:
    _assert_envelope(httpx.get(f"{server.base_url}/v1/nothing"), 404)


def test_wrong_method_is_enveloped(server: ServerProcess) -> None:
    reply = httpx.get(f"{server.base_url}/v1/chat/completions")
    _assert_envelope(reply, 405)

"""Error cases over HTTP: the OpenAI envelope, 400 not 422, 404, 413, context length."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import MODEL, TEST_BODY_LIMIT
from tests.fixtures.server import ServerProcess

HI = [{"role": "user", "content": "Hi"}]


def _nested(levels: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(levels):
        value = {"a": value}
    return value


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
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": ["a"] * 30_000}, "stop"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"99999999": 1}}, "logit_bias"),  # outside the vocabulary
        ({"max_tokens": 0}, "max_tokens"),
        ({"chat_template_kwargs": _nested(900)}, "chat_template_kwargs"),
    ],
)
def test_bad_parameters_are_400(
    server: ServerProcess, extra: dict[str, object], param: str
) -> None:
    body = {"model": MODEL, "messages": HI, "max_tokens": 1, **extra}
    error = _assert_envelope(httpx.post(f"{server.base_url}/v1/chat/completions", json=body), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["code"], "every 400 names a code"


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


def _raw_post(server: ServerProcess, path: str, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}{path}",
        content=body.replace(b"MODEL", MODEL.encode()),
        headers={"content-type": "application/json"},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/chat/completions",
            b'{"model":"MODEL","messages":[{"role":"user","content":"a\\ud800"}],"max_tokens":1}',
            "messages.0.content",
        ),
        (
            "/v1/chat/completions",
            b'{"model":"MODEL","messages":[{"role":"system","content":"\\udfff"},'
            b'{"role":"user","content":"Hi"}],"max_tokens":1}',
            "messages.0.content",
        ),
        (
            "/v1/chat/completions",
            b'{"model":"MODEL","messages":[{"role":"user","content":"Hi"},{"role":"assistant",'
            b'"tool_calls":[{"id":"c","type":"function","function":{"name":"f",'
            b'"arguments":"\\ud800"}}]},{"role":"tool","tool_call_id":"c","content":"x"}],'
            b'"max_tokens":1}',
            "messages.1.tool_calls.0.function.arguments",
        ),
        (
            "/v1/chat/completions",
            b'{"model":"MODEL","messages":[{"role":"user","content":"Hi"}],"stop":["\\ud800"],'
            b'"max_tokens":1}',
            "stop.0",
        ),
        (
            "/v1/chat/completions",
            b'{"model":"\\ud800","messages":[{"role":"user","content":"Hi"}],"max_tokens":1}',
            "model",
        ),
        (
            "/v1/chat/completions",  # a surrogate sent as raw UTF-8 bytes, not as an escape
            b'{"model":"MODEL","messages":[{"role":"user","content":"\xed\xa0\x80"}]}',
            "messages.0.content",
        ),
        ("/v1/completions", b'{"model":"MODEL","prompt":"\\ud800","max_tokens":1}', "prompt"),
        (
            "/v1/embeddings",
            b'{"model":"MODEL","input":["\\ud800"]}',
            "input.0",
        ),
    ],
)
def test_lone_surrogate_is_400_naming_the_parameter(
    server: ServerProcess, path: str, body: bytes, param: str
) -> None:
    error = _assert_envelope(_raw_post(server, path, body), 400)
    assert (error["param"], error["code"]) == (param, "invalid_unicode")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (
            b'{"model":"MODEL","max_tokens":1,"messages":[{"role":"user","content":"\\ud800"}]}',
            "'messages.0.content'",
        ),
        (
            b'{"model":"MODEL","max_tokens":1,"system":"\\ud800",'
            b'"messages":[{"role":"user","content":"Hi"}]}',
            "'system'",
        ),
        (
            b'{"model":"MODEL","max_tokens":1,"messages":[{"role":"user","content":"Hi"},'
            b'{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f",'
            b'"input":{"a":"\\ud800"}}]},{"role":"user","content":[{"type":"tool_result",'
            b'"tool_use_id":"t","content":"x"}]}]}',
            "'messages.1.content.0.input.a'",
        ),
    ],
)
def test_lone_surrogate_is_anthropic_400(server: ServerProcess, body: bytes, where: str) -> None:
    reply = _raw_post(server, "/v1/messages", body)
    assert reply.status_code == 400, reply.text
    error = reply.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "surrogate" in error["error"]["message"] and where in error["error"]["message"]


def test_surrogate_pair_is_text(server: ServerProcess) -> None:
    body = (
        b'{"model":"MODEL","messages":[{"role":"user","content":"\\ud83d\\ude00"}],"max_tokens":1}'
    )
    assert _raw_post(server, "/v1/chat/completions", body).status_code == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"model": "MODEL"}', "missing_required_parameter"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"model": "MODEL", "messages": "Hi"}', "invalid_type"),
        (b'{"model": "MODEL", "messages": []}', "empty_array"),
        (b'{"model": "MODEL", "messages": [{"role": "wizard", "content": "x"}]}', "invalid_value"),
        (
            b'{"model": "MODEL", "messages": [{"role": "user", "content": "Hi"}], "top_k": -5}',
            "integer_below_min_value",
        ),
        (  # not UTF-8
            b'{"model": "MODEL", "messages": [{"role": "user", "content": "\xff"}]}',
            "invalid_request_body",
        ),
    ],
)
def test_every_400_has_a_code(server: ServerProcess, body: bytes, code: str) -> None:
    error = _assert_envelope(_raw_post(server, "/v1/chat/completions", body), 400)
    assert error["code"] == code


def test_long_model_name_is_400_and_never_echoed_whole(server: ServerProcess) -> None:
    name = "x" * 100_000
    body = {"model": name, "messages": HI, "max_tokens": 1}
    error = _assert_envelope(httpx.post(f"{server.base_url}/v1/chat/completions", json=body), 400)
    assert (error["param"], error["code"]) == ("model", "string_above_max_length")
    assert len(str(error["message"])) < 1000
    reply = httpx.post(f"{server.base_url}/v1/messages", json={**body, "messages": HI})
    assert reply.status_code == 400 and len(reply.text) < 1000
    # A path is no pydantic field: the 404 echoes the name cut to 256 characters.
    error = _assert_envelope(httpx.get(f"{server.base_url}/v1/models/{'y' * 5000}"), 404)
    assert "y" * 255 + "…" in str(error["message"]) and "y" * 256 not in str(error["message"])

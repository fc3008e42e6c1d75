"""End to end on a real server: a giant body naming a local text model is 413 in each
dialect before it is parsed; the same body routed to an upstream goes on; a valid body larger
than the bound in bytes (whitespace, logit_bias) is served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fixtures.fake_upstream import FakeUpstream
from tests.fixtures.server import ServerProcess

# 3 MiB of words: the tiny model's bound is 2,048 x 38 characters beyond a ~1.2 MB allowance.
GIANT = "lorem ipsum " * (3 * 1024 * 1024 // 12)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def server(
    tiny_model_dirs: dict[str, Path],
    upstream: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("giant-body")
    config = {
        "providers": [
            {"name": "cloud", "kind": "openai_compatible", "base_url": f"{upstream.base_url}/ok"}
        ],
        "routes": [
            {"pattern": "up-", "match": "prefix", "targets": [{"provider": "cloud", "model": "m"}]}
        ],
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    process = ServerProcess(
        "--config",
        str(path),
        "--model",
        f"tiny={tiny_model_dirs['llama']}",
        "--model-alias",
        "gpt-tiny=tiny",
        log_dir=root,
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def _post(server: ServerProcess, path: str, body: bytes | dict[str, Any]) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if path.startswith("/v1/messages"):
        headers["anthropic-version"] = "2023-06-01"
    return httpx.post(f"{server.base_url}{path}", content=data, headers=headers, timeout=120)


def _chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", _chat("tiny", GIANT)),
        ("/v1/chat/completions", _chat("gpt-tiny", GIANT)),  # an alias of the local model
        ("/v1/completions", {"model": "tiny", "prompt": GIANT}),
        ("/v1/responses", {"model": "tiny", "input": GIANT}),
    ],
)
def test_openai_giant_is_413(server: ServerProcess, path: str, body: dict[str, Any]) -> None:
    reply = _post(server, path, body)
    assert reply.status_code == 413, reply.text
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    assert "model 'tiny'" in error["message"] and "2048 tokens" in error["message"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_anthropic_giant_is_413(server: ServerProcess, path: str) -> None:
    reply = _post(server, path, _chat("tiny", GIANT, max_tokens=1))
    assert reply.status_code == 413, reply.text
    body = reply.json()
    assert body["type"] == "error" and body["error"]["type"] == "request_too_large"


def test_the_same_giant_routed_upstream_is_not_refused_here(
    server: ServerProcess, upstream: FakeUpstream
) -> None:
    before = upstream.hits["ok"]
    reply = _post(server, "/v1/chat/completions", _chat("up-gpt", GIANT, max_tokens=1))
    assert reply.status_code == 200, reply.text
    assert upstream.hits["ok"] == before + 1  # it reached the upstream whole


def test_a_body_just_under_the_bound_is_left_to_the_prompt_check(server: ServerProcess) -> None:
    """Not refused by the body check: parsed, then refused by its length (400)."""
    text = "x" * (2048 * 38 + 1_196_224 - 200)  # text_chars + allowance, less the envelope
    reply = _post(server, "/v1/chat/completions", _chat("tiny", text))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "context_length_exceeded"


def test_a_valid_body_larger_than_the_bound_in_bytes_is_served(server: ServerProcess) -> None:
    """2 MB of indentation and a logit_bias for every token id: bytes that are not prompt."""
    body = _chat("tiny", "lorem ipsum " * 100, max_tokens=1)
    body["logit_bias"] = {str(i): 0.0 for i in range(518)}
    data = json.dumps(body).replace('"messages": [', '"messages": [' + " " * 2_000_000).encode()
    reply = _post(server, "/v1/chat/completions", data)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["prompt_tokens"] > 100

"""A prompt that cannot fit the context is refused by its length, before it is tokenized.

These bodies are under the giant-body bound (api/giant_body.py; a larger one is 413 before it
is parsed, tests/api/test_giant_body_http.py): they are parsed and refused here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import ServerProcess

GIANT = "lorem ipsum " * (1024 * 1024 // 12)  # 1 MiB: ~350 k tokens, context 2048


@pytest.fixture(scope="module")
def tiny(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "--model", f"tiny={tiny_model_dirs['llama']}", log_dir=tmp_path_factory.mktemp("giant")
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def _post(server: ServerProcess, path: str, body: dict[str, object]) -> httpx.Response:
    headers = {"anthropic-version": "2023-06-01"} if path.startswith("/v1/messages") else {}
    return httpx.post(f"{server.base_url}{path}", json=body, headers=headers, timeout=120)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": GIANT}]}, "messages"),
        ("/v1/completions", {"prompt": GIANT, "max_tokens": 1}, "prompt"),
    ],
)
def test_openai_giant_prompt_is_refused_by_its_length(
    tiny: ServerProcess, path: str, body: dict[str, object], param: str
) -> None:
    reply = _post(tiny, path, {"model": "tiny", **body})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["param"] == param
    # "at least": counted from the length, not tokenized.
    assert "at least" in error["message"] and "2048" in error["message"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_anthropic_giant_prompt_is_refused_by_its_length(tiny: ServerProcess, path: str) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": GIANT}]}
    if path == "/v1/messages":
        body["max_tokens"] = 1
    reply = _post(tiny, path, body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("prompt is too long: at least")


def test_a_prompt_under_the_length_bound_is_refused_by_its_prefix(tiny: ServerProcess) -> None:
    """240,000 characters: under context x longest token, so not refused by length alone, but
    its first 16,384 characters already exceed the context: the rest is never tokenized."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": "lorem ipsum " * 20_000}]}
    reply = _post(tiny, "/v1/chat/completions", body)
    assert reply.status_code == 400
    assert "at least" in reply.json()["error"]["message"]


def test_a_prompt_a_little_too_long_is_counted_exactly(tiny: ServerProcess) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "lorem ipsum " * 1200}]}
    reply = _post(tiny, "/v1/chat/completions", body)
    assert reply.status_code == 400
    assert "resulted in" in reply.json()["error"]["message"]
    assert "at least" not in reply.json()["error"]["message"]

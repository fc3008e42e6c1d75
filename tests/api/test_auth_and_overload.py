"""A server with --api-key and a one-request queue: auth in both dialects, overload as 529/503."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.conftest import MODEL
from tests.fixtures.server import ServerProcess

KEY = "sk-test-key"
HI = [{"role": "user", "content": "Hi"}]
LONG = {
    "model": MODEL,
    "max_tokens": 400,
    "messages": [{"role": "user", "content": "Write a long essay."}],
    "stream": True,
}


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "--api-key",
        KEY,
        "--max-waiting-requests",
        "1",
        "--max-num-seqs",
        "1",
        log_dir=tmp_path_factory.mktemp("locked"),
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def test_anthropic_x_api_key_and_bearer(locked: ServerProcess) -> None:
    for client in (
        anthropic.Anthropic(base_url=locked.base_url, api_key=KEY, max_retries=0),
        anthropic.Anthropic(base_url=locked.base_url, api_key=None, auth_token=KEY, max_retries=0),
    ):
        assert client.messages.count_tokens(model=MODEL, messages=HI).input_tokens > 0  # type: ignore[arg-type]


def test_anthropic_wrong_key_is_401_authentication_error(locked: ServerProcess) -> None:
    client = anthropic.Anthropic(base_url=locked.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        client.messages.create(model=MODEL, max_tokens=1, messages=HI)  # type: ignore[arg-type]
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_openai_bearer(locked: ServerProcess) -> None:
    good = openai.OpenAI(base_url=f"{locked.base_url}/v1", api_key=KEY, max_retries=0)
    assert MODEL in [m.id for m in good.models.list().data]
    bad = openai.OpenAI(base_url=f"{locked.base_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.models.list()
    assert info.value.body["code"] == "invalid_api_key"  # type: ignore[index]


def test_one_credential_parser_for_every_route_and_health_is_open(locked: ServerProcess) -> None:
    """Bearer and x-api-key both work everywhere; two different keys at once are refused."""
    assert httpx.get(f"{locked.base_url}/v1/models", headers={"x-api-key": KEY}).status_code == 200
    both = {"x-api-key": KEY, "authorization": "Bearer other"}
    reply = httpx.get(f"{locked.base_url}/v1/models", headers=both)
    assert reply.status_code == 401 and "two different keys" in reply.json()["error"]["message"]
    assert httpx.get(f"{locked.base_url}/health").status_code == 200


def test_every_other_route_needs_the_key(locked: ServerProcess) -> None:
    """Deny by default: model management, metrics and the API docs are not open."""
    for method, path in [
        ("GET", "/admin/models/status"),
        ("POST", f"/admin/models/unload/{MODEL}"),
        ("GET", "/metrics"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
    ]:
        reply = httpx.request(method, f"{locked.base_url}{path}")
        assert reply.status_code == 401, (path, reply.status_code)
    bearer = {"authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{locked.base_url}/metrics", headers=bearer).status_code == 200
    assert httpx.get(f"{locked.base_url}/admin/models/status", headers=bearer).status_code == 200


def test_root_probe_is_open_and_names_no_model(locked: ServerProcess) -> None:
    """Claude Code sends HEAD / before its first request, possibly without the key."""
    assert httpx.head(f"{locked.base_url}/").status_code == 200
    root = httpx.get(f"{locked.base_url}/")
    assert root.status_code == 200 and MODEL not in root.text
    assert httpx.get(f"{locked.base_url}/v1/models").status_code == 401


def _wait_for(server: ServerProcess, running: int, waiting: int) -> None:
    deadline = time.monotonic() + 60
    headers = {"authorization": f"Bearer {KEY}"}
    while time.monotonic() < deadline:
        stats = httpx.get(f"{server.base_url}/v1/queue/stats", headers=headers).json()
        if stats["running"] >= running and stats["waiting"] >= waiting:
            return
        time.sleep(0.05)
    raise AssertionError(f"engine never reached running={running} waiting={waiting}")


def test_overload_is_529_overloaded_error(locked: ServerProcess) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    http = httpx.Client(base_url=locked.base_url, headers=headers, timeout=60)
    with http, http.stream("POST", "/v1/messages", json=LONG) as first:
        first_lines = first.iter_lines()  # keep a reference: a dropped iterator closes
        next(first_lines)
        _wait_for(locked, running=1, waiting=0)
        with http.stream("POST", "/v1/messages", json=LONG) as second:
            second_lines = second.iter_lines()
            next(second_lines)
            _wait_for(locked, running=1, waiting=1)
            client = anthropic.Anthropic(base_url=locked.base_url, api_key=KEY, max_retries=0)
            with pytest.raises(anthropic.OverloadedError) as info:
                client.messages.create(model=MODEL, max_tokens=1, messages=HI)  # type: ignore[arg-type]
            assert info.value.status_code == 529
            assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
            openai_client = openai.OpenAI(
                base_url=f"{locked.base_url}/v1", api_key=KEY, max_retries=0
            )
            with pytest.raises(openai.InternalServerError) as oi:
                openai_client.chat.completions.create(model=MODEL, max_tokens=1, messages=HI)  # type: ignore[arg-type]
            assert oi.value.status_code == 503

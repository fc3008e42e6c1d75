"""/v1/models, /health and the request id, against the live server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.conftest import ALIAS, MODEL
from tests.fixtures.server import ServerProcess


def test_models_list(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL, ALIAS]  # the session server's alias
    card = models.data[0]
    assert card.object == "model"
    assert card.model_extra is not None and card.model_extra["context_length"] == 8192


def test_model_retrieve(client: openai.OpenAI) -> None:
    assert client.models.retrieve(MODEL).id == MODEL


def test_health_ready(server: ServerProcess) -> None:
    reply = httpx.get(f"{server.base_url}/health")
    assert reply.status_code == 200
    assert reply.json()["status"] == "ready"


def test_request_id_echoed_and_minted(server: ServerProcess) -> None:
    minted = httpx.get(f"{server.base_url}/v1/models")
    assert minted.headers["x-request-id"].startswith("req_")
    mine = httpx.get(f"{server.base_url}/v1/models", headers={"x-request-id": "abc-123"})
    assert mine.headers["x-request-id"] == "abc-123"
    error = httpx.post(f"{server.base_url}/v1/chat/completions", json={})
    assert error.status_code == 400 and error.headers["x-request-id"]


def test_queue_stats(server: ServerProcess) -> None:
    stats = httpx.get(f"{server.base_url}/v1/queue/stats").json()
    assert {"running", "waiting", "generated_tokens", "aborted_requests"} <= set(stats)


@pytest.mark.timeout(90)  # the bug hangs the first stream: fail, not wait
def test_reused_request_id_does_not_cross_streams(server: ServerProcess) -> None:
    """Gateways reuse x-request-id on retries: two requests in flight with one id must both
    finish (the engine once keyed its streams by it and left the first hanging)."""

    def ask(word: str) -> httpx.Response:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"Say {word}."}],
            "max_tokens": 8,
            "stream": True,
        }
        headers = {"x-request-id": "retry-1"}
        return httpx.post(
            f"{server.base_url}/v1/chat/completions", json=body, headers=headers, timeout=60
        )

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(ask, ["yes", "no"]))
    for reply in replies:
        assert reply.status_code == 200
        assert reply.headers["x-request-id"] == "retry-1"
        assert reply.text.rstrip().endswith("data: [DONE]")
    stats = httpx.get(f"{server.base_url}/v1/queue/stats").json()
    assert stats["running"] == 0

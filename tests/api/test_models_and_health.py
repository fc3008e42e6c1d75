"""/v1/models, /health and the request id, against the live server."""

from __future__ import annotations

import httpx
import openai

from tests.conftest import MODEL
from tests.fixtures.server import ServerProcess


def test_models_list(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
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

"""The audit middleware and GET /admin/requests in a real app, in process (no model): a 401
and a 413 get rows too (outside authentication and the body limit), a bad body keeps its
model, the error's code is stored and never its message; the viewer needs the key; with
--no-audit nothing is recorded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlx_manager.api.app import create_app
from mlx_manager.audit.middleware import AuditMiddleware
from mlx_manager.config import load_settings

KEY = "sk-audit-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
LOCAL = "http://127.0.0.1"  # a Host the server answers


def _app(tmp_path: Path, **flags: Any) -> Any:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    settings = load_settings(
        {
            "data_dir": tmp_path / "data",
            "model_dir": [str(models)],
            "api_key": KEY,
            "audit_flush_ms": 20,
            "max_request_bytes": 4096,
            **flags,
        }
    )
    return create_app(settings)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(_app(tmp_path, audit_prompts=True), base_url=LOCAL) as test_client:
        yield test_client


def _rows(client: TestClient, count: int, **params: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        reply = client.get("/admin/requests", params=params, headers=AUTH)
        assert reply.status_code == 200, reply.text
        rows: list[dict[str, Any]] = reply.json()["data"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_refused_requests_get_rows(client: TestClient) -> None:
    chat = "/v1/chat/completions"
    ask = {"model": "absent", "messages": [{"role": "user", "content": "secret words"}]}
    assert client.post(chat, json=ask, headers={"x-request-id": "r-401"}).status_code == 401
    bad = {"model": "bad-model", "messages": [], "stream": True}
    reply = client.post(chat, json=bad, headers={**AUTH, "x-request-id": "r-400"})
    assert reply.status_code == 400
    big = {**ask, "pad": "x" * 5000}
    assert client.post(chat, json=big, headers={**AUTH, "x-request-id": "r-413"}).status_code == 413
    reply = client.post(chat, json=ask, headers={**AUTH, "x-request-id": "r-404"})
    assert reply.status_code == 404
    anth = {"model": "absent", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    reply = client.post("/v1/messages", json=anth, headers={**AUTH, "x-request-id": "r-msg"})
    assert reply.status_code == 404
    assert (
        client.post(
            "/v1/embeddings", json={}, headers={**AUTH, "x-request-id": "r-emb"}
        ).status_code
        == 400
    )
    odd = b'{"model": "odd\\ud800", "messages": [{"role": "user", "content": "x"}]}'
    reply = client.post(
        chat,
        content=odd,
        headers={**AUTH, "x-request-id": "r-odd", "content-type": "application/json"},
    )
    assert reply.status_code == 400
    # not audited: a GET, an admin route, count_tokens
    client.get("/v1/models", headers=AUTH)
    client.post("/v1/messages/count_tokens", json=anth, headers=AUTH)

    rows = {row["request_id"]: row for row in _rows(client, 7)}
    assert set(rows) == {"r-401", "r-400", "r-413", "r-404", "r-msg", "r-emb", "r-odd"}
    assert rows["r-odd"]["model"] == "odd\ufffd\ufffd\ufffd"  # storable, and stored
    unauthorized = rows["r-401"]
    assert (unauthorized["status"], unauthorized["error"]) == (401, "invalid_api_key")
    assert unauthorized["user_id"] is None
    assert unauthorized["model"] == "absent"  # refused in the route: the body was read
    assert unauthorized["prompt"] is None  # never routed: no prompt even with --audit-prompts
    refused = rows["r-400"]
    assert (refused["status"], refused["error"], refused["model"]) == (
        400,
        "empty_array",
        "bad-model",
    )
    assert refused["stream"] is True and refused["backend"] is None
    assert refused["user_id"] == "static-key"
    assert (rows["r-413"]["status"], rows["r-413"]["error"]) == (413, "request_too_large")
    missing = rows["r-404"]
    assert (missing["status"], missing["error"], missing["backend"]) == (
        404,
        "model_not_found",
        "local",
    )
    assert missing["prompt"] == "secret words"  # --audit-prompts
    assert rows["r-msg"]["api"] == "anthropic.messages"
    assert rows["r-msg"]["error"] == "not_found_error"  # Anthropic's shape: its type
    assert rows["r-emb"]["api"] == "openai.embeddings"
    for row in rows.values():  # never a message (they name the model, the limit, ...)
        assert row["error"] is None or " " not in row["error"]
        assert row["latency_ms"] is not None and row["arrived_at"].endswith("Z")


def test_the_viewer_is_admin_only_and_answers_bad_parameters_with_400(client: TestClient) -> None:
    assert client.get("/admin/requests").status_code == 401
    for query in (
        "status=2x",
        "since=soon",
        "limit=0",
        "limit=501",
        "cursor=@@",
        "nope=1",
        "since=2026-12-05&until=2026-12-04",
        "aggregates=maybe",
    ):
        reply = client.get(f"/admin/requests?{query}", headers=AUTH)
        assert reply.status_code == 400, (query, reply.text)
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}


def test_no_audit_records_nothing(tmp_path: Path) -> None:
    app = _app(tmp_path, audit=False)
    assert not any(m.cls is AuditMiddleware for m in app.user_middleware)
    with TestClient(app, base_url=LOCAL) as test_client:
        test_client.post("/v1/chat/completions", json={"model": "x", "messages": []}, headers=AUTH)
        time.sleep(0.2)
        reply = test_client.get("/admin/requests", headers=AUTH)
        assert reply.status_code == 200 and reply.json()["data"] == []

"""Error handlers answer in the caller's dialect: overload is 503 for OpenAI, 529 for Anthropic."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from mlx_manager.api.errors import install_error_handlers
from mlx_manager.api.middleware import RequestIdMiddleware
from mlx_manager.errors import ContextLengthExceeded, Overloaded


def app() -> TestClient:
    application = FastAPI()
    install_error_handlers(application)

    @application.post("/v1/messages")
    @application.post("/v1/chat/completions")
    async def busy() -> None:
        raise Overloaded("too many requests are waiting; retry later")

    @application.get("/v1/models")
    async def long() -> None:
        raise ContextLengthExceeded(
            "OpenAI words", anthropic_message="prompt is too long: 9 tokens > 8 maximum"
        )

    application.add_middleware(RequestIdMiddleware)
    return TestClient(application)


def test_overloaded_in_each_dialect() -> None:
    client = app()
    anthropic = client.post("/v1/messages")
    assert anthropic.status_code == 529
    assert anthropic.json() == {
        "type": "error",
        "error": {
            "type": "overloaded_error",
            "message": "too many requests are waiting; retry later",
        },
    }
    assert anthropic.headers["request-id"] and anthropic.headers["retry-after"] == "1"
    openai = client.post("/v1/chat/completions")
    assert openai.status_code == 503 and openai.json()["error"]["code"] == "overloaded"


def test_anthropic_version_header_selects_the_dialect() -> None:
    client = app()
    assert client.get("/v1/models").json()["error"]["message"] == "OpenAI words"
    reply = client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
    assert reply.json()["error"] == {
        "type": "invalid_request_error",
        "message": "prompt is too long: 9 tokens > 8 maximum",
    }

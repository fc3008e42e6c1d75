"""BodyLimitMiddleware with the giant-body screen, driven at the ASGI level with bodies cut
into chunks: a body that cannot fit every model it names is answered 413 in the caller's
dialect and never reaches the app (nothing parses it); anything else passes through whole."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from mlx_manager.api import body_scan
from mlx_manager.api.giant_body import giant_body_screens
from mlx_manager.api.middleware import BodyLimitMiddleware
from mlx_manager.config import RouteSettings
from mlx_manager.frontend.body_bound import body_bound
from mlx_manager.models.card import ModelCard
from mlx_manager.models.detection import ModelType
from mlx_manager.models.families import detect_family
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.body_bounds import BodyBounds
from mlx_manager.routing.rules import RuleSet
from mlx_manager.routing.service import GenerationService

LIMIT = 16 * 1024 * 1024
CHUNK = 65_536


def card(model_id: str, model_type: ModelType = ModelType.TEXT) -> ModelCard:
    return ModelCard(
        model_id=model_id,
        path=Path(model_id),
        tokenizer=[None] * 100,
        family=detect_family({}, model_id),
        context_length=1000,
        stop_token_ids=frozenset(),
        model_type=model_type,
        max_token_chars=10,
    )


CARDS = {"small": card("small"), "vision": card("vision", ModelType.VISION)}
BOUND = body_bound(CARDS["small"])
assert BOUND is not None


def bounds() -> BodyBounds:
    up = RouteSettings.model_validate(
        {"pattern": "up-", "match": "prefix", "targets": [{"provider": "cloud", "model": "m"}]}
    )
    aliases = AliasTable()
    local: Any = object()  # never called: the screen only routes names
    service = GenerationService(
        local, aliases, upstreams={"cloud": local}, rules=RuleSet.build([up], aliases)
    )
    return BodyBounds(service, CARDS.get)


class Downstream:
    """The app behind the middleware: parses the body, as FastAPI would."""

    def __init__(self) -> None:
        self.parsed: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.parsed.append(json.loads(body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def post(
    path: str, body: bytes, chunk: int = CHUNK, declare: bool = True
) -> tuple[int, Any, Downstream]:
    """(status, JSON reply, the app behind) for `body` sent in `chunk`-byte pieces."""
    app = Downstream()
    middleware = BodyLimitMiddleware(app, LIMIT, screens=giant_body_screens(bounds))
    headers = [(b"content-type", b"application/json")]
    if declare:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    pieces = [body[at : at + chunk] for at in range(0, len(body), chunk)] or [b""]
    messages: list[Message] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    status = sent[0]["status"]
    reply = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(reply), app


def chat(model: str, text: str, **extra: Any) -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    ).encode()


GIANT = "x" * (BOUND.plain_bytes + 10_000)  # no whitespace: each byte a character


@pytest.fixture
def loads_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every input json.loads is given (the screen's own small name reads too)."""
    sizes: list[int] = []
    real = json.loads

    def spy(data: Any, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(json, "loads", spy)
    monkeypatch.setattr(body_scan.json, "loads", spy)
    return sizes


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", chat("small", GIANT)),
        ("/v1/completions", json.dumps({"model": "small", "prompt": GIANT}).encode()),
        ("/v1/responses", json.dumps({"model": "small", "input": GIANT}).encode()),
    ],
)
def test_a_giant_is_413_in_openais_shape_and_never_parsed(
    path: str, body: bytes, loads_sizes: list[int]
) -> None:
    status, reply, app = post(path, body)
    assert status == 413 and app.parsed == []
    assert reply["error"]["type"] == "invalid_request_error"
    assert reply["error"]["code"] == "request_too_large"
    assert "'small'" in reply["error"]["message"] and "1000 tokens" in reply["error"]["message"]
    assert max(loads_sizes) < 1000  # the model name (and this error reply), never the body


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_a_giant_is_413_in_anthropics_shape(path: str, loads_sizes: list[int]) -> None:
    status, reply, app = post(path, chat("small", GIANT, max_tokens=1))
    assert status == 413 and app.parsed == []
    assert reply["type"] == "error" and reply["error"]["type"] == "request_too_large"
    assert max(loads_sizes) < 1000


def test_a_chunked_body_without_content_length_is_screened_too() -> None:
    status, _, app = post("/v1/chat/completions", chat("small", GIANT), chunk=7777, declare=False)
    assert status == 413 and app.parsed == []


def test_a_valid_body_just_under_the_bound_passes_and_one_more_character_is_refused() -> None:
    envelope = chat("small", "")
    # JSON whitespace is not counted as text: the envelope's spaces are not either.
    counted = len(envelope) - envelope.count(b" ")
    under = BOUND.text_chars - 1 + BOUND.allowance - counted  # characters of prompt
    status, _, app = post("/v1/chat/completions", chat("small", "y" * under))
    assert status == 200 and len(app.parsed) == 1  # passed through, parsed once downstream
    assert app.parsed[0]["messages"][0]["content"] == "y" * under
    status, _, app = post("/v1/chat/completions", chat("small", "y" * (under + 1)))
    assert status == 413 and app.parsed == []


def test_nested_model_keys_do_not_break_it() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "pick",
            "parameters": {"type": "object", "properties": {"model": {"type": "string"}}},
        },
    }
    same = chat("small", GIANT, metadata={"model": "small"}, tools=[tool])
    assert post("/v1/chat/completions", same)[0] == 413
    # A nested name with no bound (an upstream's) might be the one parsed: not refused here.
    other = chat("small", GIANT, metadata={"model": "up-gpt"})
    assert post("/v1/chat/completions", other)[0] == 200


@pytest.mark.parametrize("model", ["up-gpt", "vision", "not-served"])
def test_upstream_vision_and_unknown_names_are_not_refused_here(model: str) -> None:
    status, _, app = post("/v1/chat/completions", chat(model, GIANT))
    assert status == 200 and len(app.parsed) == 1


def test_other_routes_are_not_screened() -> None:
    assert post("/v1/embeddings", json.dumps({"model": "small", "input": GIANT}).encode())[0] == 200


def test_whitespace_padding_is_never_counted_as_prompt() -> None:
    padded = chat("small", "z" * 1000).replace(b"[", b"[" + b" " * (2 * BOUND.plain_bytes))
    assert post("/v1/chat/completions", padded)[0] == 200

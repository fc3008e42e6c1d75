"""ASGI middleware: a request id on every response, and a cap on request body size."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlx_manager.api.body_pacer import BodyPacer
from mlx_manager.api.dialect import is_anthropic
from mlx_manager.errors import ApiError, RequestTooLarge
from mlx_manager.observability.logs import REQUEST_ID

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_of(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", ""))


class RequestIdMiddleware:
    """Honours a sane incoming `x-request-id`, else mints one; echoes it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        REQUEST_ID.set(request_id)  # on every log line of this request (--log-format json)
        # x-request-id for OpenAI clients, request-id for Anthropic's SDK.
        headers = [(b"x-request-id", request_id.encode()), (b"request-id", request_id.encode())]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_id)


def replay_body(chunks: list[bytes], final: Message | None, then: Receive | None = None) -> Receive:
    """A receive() that hands out the buffered body, then defers to the real one."""
    pending: list[Message] = [
        {"type": "http.request", "body": b"".join(chunks), "more_body": False}
    ]
    if final is not None:
        pending = [final]

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, when it sent a valid one."""
    declared = dict(scope.get("headers", [])).get(b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


class BodyScreen(Protocol):
    """Sees a body's chunks as they arrive; may refuse the body once it is in, unparsed."""

    def feed(self, chunk: bytes) -> None: ...

    def refusal(self) -> ApiError | None: ...


class BodyLimitMiddleware:
    """413 for bodies over `limit` bytes, by Content-Length or while streaming the body in.

    `path_limits` gives some paths their own limit (audio uploads are larger than JSON).
    `screens` gives a request a `BodyScreen` (or None): a giant body that cannot fit its model
    (api/giant_body.py) is refused here, before anything downstream buffers or parses it.
    `pacer` reads the large part of large bodies at a rate shared by all (api/body_pacer.py).
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        path_limits: dict[str, int] | None = None,
        screens: Callable[[Scope], BodyScreen | None] | None = None,
        pacer: BodyPacer | None = None,
    ) -> None:
        self.app = app
        self.pacer = pacer
        self.limit = limit
        self.path_limits = path_limits or {}
        self.screens = screens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(str(scope.get("path", "")), self.limit)
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            await self._reject(scope, send, limit)
            return
        # Read the body up front (bounded by the limit) so an oversized chunked upload is a
        # clean 413 rather than a parse error deep inside the framework.
        screen = self.screens(scope) if self.screens is not None else None
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, replay_body([], message), send)
                return
            chunks.append(message.get("body", b""))
            if self.pacer is not None:
                await self.pacer.pace(size, len(chunks[-1]))
            size += len(chunks[-1])
            if size > limit:
                await self._reject(scope, send, limit)
                return
            if screen is not None:
                screen.feed(chunks[-1])
            more = bool(message.get("more_body", False))
        refusal = screen.refusal() if screen is not None else None
        if refusal is not None:
            await send_error(scope, send, refusal)
            return
        await self.app(scope, replay_body(chunks, None, receive), send)

    def _message(self, limit: int) -> str:
        return f"Request body exceeds the limit of {limit} bytes."

    async def _reject(self, scope: Scope, send: Send, limit: int) -> None:
        await send_error(scope, send, RequestTooLarge(self._message(limit)))


async def send_error(scope: Scope, send: Send, error: ApiError) -> None:
    """Answer with `error` in the caller's dialect, straight from ASGI middleware."""
    anthropic = is_anthropic(scope)
    body = json.dumps(error.anthropic_body() if anthropic else error.openai_body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in error.headers.items()),
    ]
    status = error.anthropic_status if anthropic else error.status
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

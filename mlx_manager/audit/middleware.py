"""The ASGI middleware that starts and finishes each audited request's record.

It sits inside the request-id middleware and outside authentication and the body limit, so
a 401 or a 413 gets its row too. It sees the status as the response starts, the error's
code in an error body (never its message), and a client that disconnects (on `receive`);
when the response is over (whole, cut by the client, or failed), it hands the row to the
sink, which only queues it.

A request refused before it reached the generation seam (a 400 for a bad body, say) has no
model yet: the body the middleware saw pass is then read for `model` and `stream`, on that
error path only.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlx_manager.audit.record import API_OF_PATH, CURRENT, STATE_KEY, AuditRecord
from mlx_manager.security.principal import Principal

BODY_KEPT_BYTES = 1024 * 1024  # a bad request's body is read for its model up to this size
ERROR_BODY_BYTES = 8192  # an error body is read for its code up to this size


class AuditSink(Protocol):
    def submit(self, row: dict[str, Any]) -> None:
        """Queue a finished row; never waits."""
        ...


class AuditMiddleware:
    def __init__(self, app: ASGIApp, sink: Callable[[], AuditSink | None]) -> None:
        """`sink` gives the writer when the server has one (it is built with the runtime,
        after the app)."""
        self.app = app
        self._sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        api = (
            API_OF_PATH.get(str(scope.get("path", "")))
            if scope["type"] == "http" and scope.get("method") == "POST"
            else None
        )
        sink = self._sink() if api is not None else None
        if api is None or sink is None:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        record = AuditRecord(
            str(state.get("request_id", "")), api, datetime.now(UTC), time.monotonic()
        )
        state[STATE_KEY] = record
        exchange = _Exchange(record, receive, send)
        token = CURRENT.set(record)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BaseException:
            if exchange.status is None:
                record.error = record.error or "internal_error"
            raise
        finally:
            CURRENT.reset(token)
            exchange.finish()
            sink.submit(record.row(exchange.status, _principal(state)))


class _Exchange:
    """The request's receive and send, watched."""

    def __init__(self, record: AuditRecord, receive: Receive, send: Send) -> None:
        self._record = record
        self._receive = receive
        self._send = send
        self.status: int | None = None
        self._body_bytes = 0
        self._error_body = bytearray()
        self._json_error = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._record.client_gone = True
        elif message["type"] == "http.request" and self._record.model is None:
            chunk = message.get("body", b"")
            self._body_bytes += len(chunk)
            if self._body_bytes <= BODY_KEPT_BYTES:
                self._record.body.append(chunk)  # a reference, no copy; dropped once routed
            else:
                self._record.body = []
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            if self.status >= 400 and self._record.error is None:
                headers = dict(message.get("headers", []))
                self._json_error = b"json" in headers.get(b"content-type", b"")
        elif message["type"] == "http.response.body" and self._json_error:
            room = ERROR_BODY_BYTES - len(self._error_body)
            self._error_body += message.get("body", b"")[: max(room, 0)]
        await self._send(message)

    def finish(self) -> None:
        """Fill in what only the exchange tells: the error's code, a bad request's model."""
        record = self._record
        if self._error_body and record.error is None:
            record.error = _error_code(bytes(self._error_body))
        if record.model is None and self.status is not None and self.status >= 400:
            _model_from_body(record, record.body)
        record.body = []


def _error_code(body: bytes) -> str | None:
    """OpenAI's `error.code` (else `error.type`), Anthropic's `error.type`: never the message."""
    with contextlib.suppress(ValueError):
        error = json.loads(body).get("error")
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            return str(code) if code else None
    return None


def _model_from_body(record: AuditRecord, chunks: list[bytes]) -> None:
    if not chunks:
        return
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        body = json.loads(b"".join(chunks))
        model = body.get("model")
        if isinstance(model, str):
            record.model = model
        record.stream = body.get("stream") is True


def _principal(state: dict[str, Any]) -> Principal | None:
    """Who called, as authentication found (open mode included); None: nobody was."""
    principal = state.get("principal")
    return principal if isinstance(principal, Principal) else None

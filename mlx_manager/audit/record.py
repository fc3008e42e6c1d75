"""One request's audit record, filled in as the request goes, and the watch on its answer.

The middleware starts the record and finishes it into a row; the generation seam (through
`route_note`) and the answer's event stream (`watch`) fill in the rest. Everything here
runs on the event loop, in the request's own task or its stream's, so a record is never
written by two threads.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlx_manager.audit.identity import identity
from mlx_manager.security.principal import Principal
from mlx_manager.types import EventStream, GenerateRequest, GenerationEvent, PassThroughStream

# The audited paths and the API each is recorded as (POST only).
API_OF_PATH = {
    "/v1/chat/completions": "openai.chat",
    "/v1/completions": "openai.completions",
    "/v1/messages": "anthropic.messages",
    "/v1/responses": "openai.responses",
    "/v1/embeddings": "openai.embeddings",
    "/v1/audio/transcriptions": "openai.transcriptions",
}
# nginx's "client closed request": the client went away before the answer ended (the 200 of
# a stream may have gone out already). Nobody receives it; the row keeps it.
CLIENT_CLOSED = 499
PROMPT_BYTES = 2048  # --audit-prompts: the last user message, cut to this many UTF-8 bytes
STATE_KEY = "audit_record"  # in the request scope's state

# The record of the request this task serves: the generation seam reads it (it sees no scope).
CURRENT: ContextVar[AuditRecord | None] = ContextVar("mlx_manager_audit_record", default=None)

# Column widths (store/tables.py: AuditRequestRow): a longer value is cut, never refused.
_WIDTH = {
    "request_id": 128,
    "api": 32,
    "model": 256,
    "served_model": 256,
    "rule": 256,
    "backend_type": 24,
    "backend": 64,
    "error": 64,
    "user_id": 128,
    "key_id": 128,
}


@dataclass(slots=True)
class AuditRecord:
    request_id: str
    api: str
    at: datetime  # arrival (wall clock, UTC)
    started: float  # arrival (monotonic), for the durations
    stream: bool = False
    model: str | None = None
    served_model: str | None = None
    rule: str | None = None
    backend_type: str | None = None
    backend: str | None = None
    attempts: list[list[Any]] = field(default_factory=list)
    error: str | None = None
    error_status: int | None = None  # of an error event (a stream's status is already 200)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    ttft_ms: int | None = None
    left_machine: bool = False
    prompt: str | None = None
    ended: bool = False  # the answer's last event went by
    client_gone: bool = False  # the server saw the client disconnect
    # The request body as it came in, kept (by reference) only until the request is routed:
    # a request refused before that has its model read from it. Never stored.
    body: list[bytes] = field(default_factory=list)

    def routed(self, model: str, rule: str | None) -> None:
        self.model, self.rule = model, rule
        self.body = []

    def elapsed_ms(self) -> int:
        return max(0, round((time.monotonic() - self.started) * 1000))

    def note_local(self, model: str, prompt_tokens: int | None = None) -> None:
        """An answer from this machine outside the generation seam (embeddings, audio)."""
        self.routed(model, None)
        self.backend = self.backend_type = "local"
        self.prompt_tokens = prompt_tokens

    def keep_prompt(self, request: GenerateRequest) -> None:
        text = last_user_text(request)
        if text is not None:
            self.prompt = text.encode()[:PROMPT_BYTES].decode(errors="ignore")

    def observe(self, event: GenerationEvent, streamed_tokens: int) -> None:
        """One event of the answer (`streamed_tokens`: token ids seen so far, this included)."""
        if self.ttft_ms is None and _has_output(event):
            self.ttft_ms = self.elapsed_ms()
        if streamed_tokens:
            self.completion_tokens = streamed_tokens  # until the usage says
        if not event.finished:
            return
        self.ended = True
        if event.usage is not None:
            self.prompt_tokens = event.usage.prompt_tokens
            self.completion_tokens = event.usage.completion_tokens
            self.cached_tokens = event.usage.cached_tokens
        if event.error is not None:
            error = event.error.api_error()
            anthropic = self.api.startswith("anthropic")
            self.error_status = error.anthropic_status if anthropic else error.status
            self.error = error.code or error.openai_type

    def row(self, http_status: int | None, principal: Principal | None) -> dict[str, Any]:
        """The row to store, now that the response has ended with `http_status` (None: no
        response was started)."""
        status = self._status(http_status)
        user_id, key_id = identity(principal)
        served = None if self.served_model == self.model else self.served_model
        row: dict[str, Any] = {
            "request_id": self.request_id,
            "at": self.at,
            "ttft_ms": self.ttft_ms,
            "latency_ms": self.elapsed_ms(),
            "api": self.api,
            "model": self.model,
            "served_model": served,  # None: the requested name, as it was
            "rule": self.rule,
            "backend_type": self.backend_type,
            "backend": self.backend,
            "attempts": self.attempts or None,
            "status": status,
            "error": None if status < 400 or status == CLIENT_CLOSED else self.error,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "stream": self.stream,
            "user_id": user_id,
            "key_id": key_id,
            "left_machine": self.left_machine,
            "prompt": self.prompt,
        }
        for name, width in _WIDTH.items():
            row[name] = storable(row[name], width)
        row["prompt"] = storable(row["prompt"])
        return row

    def _status(self, http_status: int | None) -> int:
        if self.client_gone and not self.ended:
            return CLIENT_CLOSED
        if http_status is None:
            return 500
        if http_status < 400 and self.error_status is not None:
            return self.error_status  # a stream that ended in an error event
        return http_status


def storable(value: Any, width: int | None = None) -> Any:
    """Text any database takes: cut to `width`, a lone surrogate (valid JSON, not UTF-8) as
    U+FFFD, NUL (PostgreSQL refuses it in text) dropped. Other values as they are."""
    if not isinstance(value, str):
        return value
    if width is not None and len(value) > width:
        value = value[:width]
    if not value.isascii():
        value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value.replace("\x00", "")


def _has_output(event: GenerationEvent) -> bool:
    return bool(
        event.token_ids
        or event.text
        or event.reasoning
        or event.tool_calls
        or event.tool_call_deltas
    )


def last_user_text(request: GenerateRequest) -> str | None:
    for message in reversed(request.messages or ()):
        if message.role == "user":
            return message.content
    return request.prompt_text


def note_local(scope: Any, model: str, prompt_tokens: int | None = None) -> None:
    """For the routes that answer outside the generation seam (embeddings, transcriptions):
    the model, served here (nothing when the request is not audited)."""
    record = record_of(scope)
    if record is not None:
        record.note_local(model, prompt_tokens)


def record_of(scope: Any) -> AuditRecord | None:
    """The record of the request in `scope` (None: not audited)."""
    state = scope.get("state") or {}
    record = state.get(STATE_KEY)
    return record if isinstance(record, AuditRecord) else None


def watch(scope: Any, stream: EventStream, streaming: bool | None) -> EventStream:
    """`stream`, watched for the audit record of the request in `scope` (as it is when the
    request is not audited)."""
    record = record_of(scope)
    if record is None:
        return stream
    record.stream = bool(streaming)
    if stream.prompt_tokens:
        record.prompt_tokens = stream.prompt_tokens
    return WatchedStream(stream, record)


class WatchedStream(PassThroughStream):
    """An event stream whose events are noted in an audit record as they are read."""

    def __init__(self, stream: EventStream, record: AuditRecord) -> None:
        super().__init__(stream)
        self._record = record

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        iterator = aiter(self._stream)
        tokens = 0
        try:
            async for event in iterator:
                tokens += len(event.token_ids)
                self._record.observe(event, tokens)
                yield event
        finally:  # leaving early closes the inner stream now (it aborts the generation)
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                await closer()

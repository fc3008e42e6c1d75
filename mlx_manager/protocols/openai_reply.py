"""OpenAI replies: chat completions and legacy completions, streamed and whole."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from mlx_manager.errors import InternalError
from mlx_manager.protocols import openai_convert as convert
from mlx_manager.protocols.openai_schemas import ChatCompletionRequest, CompletionRequest
from mlx_manager.protocols.openai_stream import ChatStreamEncoder
from mlx_manager.protocols.replies import Payload, joined
from mlx_manager.types import GenerationEvent


def _error_chunk(event: GenerationEvent) -> dict[str, Any]:
    # Mid-stream, OpenAI's clients show the message only: an error meant for the client (a
    # shutdown, say) as it is; a bug by its kind, never its details.
    error = event.error
    if error is not None and error.is_client_error:
        return error.api_error().openai_body()
    kind = error.kind if error is not None else "error"
    return InternalError(f"generation failed: {kind}").openai_body()


class ChatReply:
    named_events = False

    def __init__(self, body: ChatCompletionRequest) -> None:
        self._model = body.model
        self._include_usage = bool(body.stream_options and body.stream_options.include_usage)
        self._logprobs = bool(body.logprobs)
        self._id = f"chatcmpl-{uuid.uuid4().hex}"
        self._created = int(time.time())

    async def stream(self, events: AsyncIterator[GenerationEvent]) -> AsyncIterator[Payload]:
        encoder = ChatStreamEncoder(
            self._id, self._model, self._created, self._include_usage, self._logprobs
        )
        for chunk in encoder.start():
            yield chunk
        async for event in events:
            if event.error is not None:
                yield _error_chunk(event)
                break
            for chunk in encoder.feed(event):
                yield chunk
        yield "[DONE]"

    def body(self, events: list[GenerationEvent]) -> dict[str, Any]:
        text, reason, usage, logprobs = joined(events)
        return convert.chat_completion(
            self._id,
            self._model,
            self._created,
            text,
            reason,
            usage,
            logprobs if self._logprobs else None,
            reasoning="".join(e.reasoning for e in events),
            calls=[c for e in events for c in e.tool_calls],
        )


class CompletionReply:
    named_events = False

    def __init__(self, body: CompletionRequest, echoed: str) -> None:
        """`echoed`: the prompt text when the request asks for `echo`, else ""."""
        self._model = body.model
        self._include_usage = bool(body.stream_options and body.stream_options.include_usage)
        self._logprobs = body.logprobs is not None
        self._prefix = echoed
        self._id = f"cmpl-{uuid.uuid4().hex}"
        self._created = int(time.time())

    def _chunk(self, text: str, event: GenerationEvent | None, logprobs: Any) -> dict[str, Any]:
        return convert.text_completion(
            self._id,
            self._model,
            self._created,
            text,
            event.finish_reason if event is not None else None,
            None,
            logprobs,
            object_usage=self._include_usage,
        )

    async def stream(self, events: AsyncIterator[GenerationEvent]) -> AsyncIterator[Payload]:
        offset = len(self._prefix)
        if self._prefix:
            yield self._chunk(self._prefix, None, None)
        async for event in events:
            if event.error is not None:
                yield _error_chunk(event)
                break
            logprobs = None
            if self._logprobs:
                logprobs = convert.completion_logprobs(list(event.logprobs), offset)
            offset += len(event.text)
            if event.text or event.finished:
                yield self._chunk(event.text, event, logprobs)
            if event.finished and self._include_usage and event.usage is not None:
                yield self._usage_chunk(event)
        yield "[DONE]"

    def _usage_chunk(self, event: GenerationEvent) -> dict[str, Any]:
        body = convert.text_completion(
            self._id, self._model, self._created, "", None, event.usage, None
        )
        body["choices"] = []
        return body

    def body(self, events: list[GenerationEvent]) -> dict[str, Any]:
        text, reason, usage, logprobs = joined(events)
        lp = convert.completion_logprobs(logprobs, len(self._prefix)) if self._logprobs else None
        return convert.text_completion(
            self._id, self._model, self._created, self._prefix + text, reason, usage, lp
        )

"""Deadlines on the local engine's event stream: first event, idle gap between events, total.

The engine never stops a generation on its own clock (a slow CPU or a huge prompt is not an
error to it), so the local provider wraps each stream here. On expiry the generation is
aborted in the engine and the stream ends with a `LocalTimeout` error event: the caller gets a
504 in its own dialect (never a 500), and a chain that has sent nothing yet fails over
(failover.classify: TIMEOUT).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from mlx_manager.config import LocalTimeouts
from mlx_manager.errors import ErrorInfo, LocalTimeout
from mlx_manager.types import EventStream, FinishReason, GenerationEvent


def timeout_error(model: str, what: str, seconds: float) -> LocalTimeout:
    return LocalTimeout(
        f"the local model {model!r} took longer than {seconds:g}s waiting for the {what}; "
        "the generation was stopped"
    )


class TimedStream:
    """`inner` with deadlines counted from `started` (the loop's clock at submission)."""

    def __init__(
        self,
        inner: EventStream,
        timeouts: LocalTimeouts,
        started: float,
        request_id: str,
        model: str,
    ) -> None:
        self._inner = inner
        self._timeouts = timeouts
        self._first_deadline = started + timeouts.first_token_s
        self._total_deadline = started + timeouts.total_s
        self._request_id = request_id
        self._model = model

    @property
    def prompt_tokens(self) -> int:
        return self._inner.prompt_tokens

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        clock = asyncio.get_running_loop().time
        iterator = aiter(self._inner)
        got_output = False
        try:
            while True:
                limit, what, seconds = self._limit(clock(), got_output)
                try:
                    async with asyncio.timeout(max(limit - clock(), 0.0)):
                        event = await anext(iterator, None)
                except TimeoutError:
                    self._inner.abort()  # the engine stops and releases the model's lease
                    yield self._timed_out(what, seconds)
                    return
                if event is None:
                    return
                got_output = True
                yield event
                if event.finished:
                    return
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                await closer()

    def _limit(self, now: float, got_output: bool) -> tuple[float, str, float]:
        """The deadline of the next event, what it waits for, and the setting behind it."""
        t = self._timeouts
        if got_output:
            limit, what, seconds = now + t.idle_s, "next token", t.idle_s
        else:
            limit, what, seconds = self._first_deadline, "first token", t.first_token_s
        if self._total_deadline <= limit:
            return self._total_deadline, "whole answer", t.total_s
        return limit, what, seconds

    def _timed_out(self, what: str, seconds: float) -> GenerationEvent:
        error = timeout_error(self._model, what, seconds)
        return GenerationEvent(
            self._request_id, finish_reason=FinishReason.ERROR, error=ErrorInfo.of(error)
        )

    def abort(self) -> None:
        self._inner.abort()

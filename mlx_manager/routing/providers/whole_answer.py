"""A non-streamed request's answer, asked of an upstream whole (`"stream": false`).

A caller that reads the whole answer anyway gains nothing from an upstream stream, and the
router pays for one: SSE framing and decoding per chunk, a deadline per event, reading the
stream's tail to keep the connection. Asked whole, the upstream sends one JSON body and the
dialect's decoder turns it into the events its stream would have given (`Decoder.whole`).

The request is made when the stream is first read (the route's `collect`), so a client that
leaves while the upstream is still generating cancels it (abort() cancels the waiting task,
and httpx closes the connection). Its failures, HTTP statuses included, come as the error
event that starts the stream: a chain peeks at it and fails over (failover._first_answer),
a lone target answers with it in the caller's dialect. With no events to time, the whole
answer has one deadline (UpstreamTimeouts.whole_answer_deadline_s: by default the first-token
one, so a stalled upstream fails over as soon as with a stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from mlx_manager.errors import ApiError
from mlx_manager.types import GenerationEvent

if TYPE_CHECKING:
    from mlx_manager.routing.providers.upstream import HttpUpstream

Decode = Callable[[Any], list[GenerationEvent]]


class WholeAnswer:
    def __init__(
        self,
        upstream: HttpUpstream,
        path: str,
        body: dict[str, Any],
        decode: Decode,
        request_id: str,
    ) -> None:
        self._upstream = upstream
        self._path = path
        self._body = body
        self._decode = decode
        self._waiting: asyncio.Task[Any] | None = None
        self._prompt_tokens = 0
        self.request_id = request_id

    @property
    def prompt_tokens(self) -> int:
        """Known once the answer came (its usage)."""
        return self._prompt_tokens

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        upstream = self._upstream
        deadline = upstream.settings.timeouts.whole_answer_deadline_s
        self._waiting = asyncio.current_task()
        try:
            answer = await upstream.post_json(self._path, self._body, deadline)
        except ApiError as error:
            yield upstream.error_event(self.request_id, error)
            return
        finally:
            self._waiting = None
        events = self._decode(answer)
        usage = events[-1].usage
        if usage is not None:
            self._prompt_tokens = usage.prompt_tokens
        for event in events:
            yield event

    def abort(self) -> None:
        """Cancel the request while it waits for the upstream (nothing to do after)."""
        task = self._waiting
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()

"""A non-streamed request's answer, asked of an upstream whole (`"stream": false`).

A caller that reads the whole answer anyway gains nothing from an upstream stream, and the
router pays for one: SSE framing and decoding per chunk, a deadline per event, reading the
stream's tail to keep the connection. Asked whole, the upstream sends one JSON body and the
dialect's decoder turns it into the events its stream would have given (`Decoder.whole`).

The call starts at once, in a task of its own made by the provider's submit: it runs in the
context submit ran in (the attempt's tracing span is the HTTP call's parent), and a client
that leaves while the upstream is still generating cancels it (abort(), from the route's
`collect`; aiohttp then closes the connection). Its failures, HTTP statuses included, come as
the error event that starts the stream: a chain peeks at it and fails over
(failover._first_answer), a lone target answers with it in the caller's dialect. With no
events to time, the whole answer has one deadline (UpstreamTimeouts.whole_answer_deadline_s:
by default the first-token one, so a stalled upstream fails over as soon as with a stream).
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
        """Starts the call (a task): made inside the provider's submit, on the event loop."""
        self._upstream = upstream
        self._prompt_tokens = 0
        self.request_id = request_id
        self._call = asyncio.ensure_future(self._fetch(path, body, decode))

    @property
    def prompt_tokens(self) -> int:
        """Known once the answer came (its usage)."""
        return self._prompt_tokens

    async def _fetch(
        self, path: str, body: dict[str, Any], decode: Decode
    ) -> list[GenerationEvent]:
        upstream = self._upstream
        deadline = upstream.settings.timeouts.whole_answer_deadline_s
        try:
            answer = await upstream.post_json(path, body, deadline)
        except ApiError as error:
            return [upstream.error_event(self.request_id, error)]
        events = decode(answer)
        usage = events[-1].usage
        if usage is not None:
            self._prompt_tokens = usage.prompt_tokens
        return events

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        for event in await self._call:
            yield event

    def abort(self) -> None:
        """Cancel the call while it waits for the upstream (nothing to do after)."""
        if not self._call.done():
            self._call.cancel()

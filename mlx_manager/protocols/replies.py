"""How a generation becomes a reply: one interface for every API's streamed and whole replies.

A route builds the reply object for its API and hands it, with the event stream, to the one
HTTP helper (`api.streaming.reply`), which frames `stream()` as SSE or returns `body()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from mlx_manager.errors import InternalError
from mlx_manager.types import FinishReason, GenerationEvent, TokenLogprob, Usage

# What a streamed reply yields: a JSON object, or a string sent as it is (OpenAI's "[DONE]").
Payload = dict[str, Any] | str


class Reply(Protocol):
    # Anthropic's SSE names each event (`event: <type>`); OpenAI's sends `data:` lines only.
    named_events: bool

    def stream(self, events: AsyncIterator[GenerationEvent]) -> AsyncIterator[Payload]: ...

    def body(self, events: list[GenerationEvent]) -> dict[str, Any]:
        """The whole reply; raises the request's ApiError when generation failed."""
        ...


def last_of(events: list[GenerationEvent]) -> tuple[GenerationEvent, Usage]:
    """The final event and its usage; raises the error of a failed generation."""
    last = events[-1]
    if last.error is not None:
        raise last.error.api_error()
    if last.usage is None:
        raise InternalError("generation ended without usage")
    return last, last.usage


def joined(
    events: list[GenerationEvent],
) -> tuple[str, FinishReason | None, Usage, list[TokenLogprob]]:
    """Text, finish reason, usage and logprobs of a whole generation."""
    last, usage = last_of(events)
    logprobs = [lp for e in events for lp in e.logprobs]
    return "".join(e.text for e in events), last.finish_reason, usage, logprobs

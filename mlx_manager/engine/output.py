"""Turns sampled tokens into GenerationEvents: detokenize, stop tokens and strings, logprobs."""

from __future__ import annotations

import time
from typing import Any

from mlx_manager.engine.request import EngineRequest
from mlx_manager.engine.stop_strings import StopStringMatcher
from mlx_manager.runner.generation import StepOutput
from mlx_manager.types import FinishReason, GenerationEvent, Timings, TokenLogprob, Usage


class OutputBuilder:
    """Per-request output state; feed it each sampled token in order."""

    def __init__(
        self, request: EngineRequest, tokenizer: Any, stop_token_ids: frozenset[int]
    ) -> None:
        self._request = request
        self._tokenizer = tokenizer
        self._stop_token_ids = stop_token_ids
        self._detokenizer = tokenizer.detokenizer
        self._detokenizer.reset()
        self._matcher = StopStringMatcher(request.sampling.stop)
        self._pending_logprobs: list[TokenLogprob] = []
        self._pending_ids: list[int] = []
        self.completion_tokens = 0
        self.cached_tokens = 0  # prompt tokens the prefix cache served (set by the engine)
        self.scheduled_at: float | None = None  # first scheduled (set by the engine)
        self.first_token_at: float | None = None

    def add(self, step: StepOutput) -> GenerationEvent | None:
        """Account one token; return an event when there is text to show or the end is reached."""
        self.completion_tokens += 1
        if self.completion_tokens == 1:
            self.first_token_at = time.monotonic()
        if step.token in self._stop_token_ids:
            return self.finish(FinishReason.STOP)
        self._detokenizer.add_token(step.token)
        self._pending_ids.append(step.token)
        if step.logprob is not None:
            self._pending_logprobs.append(self._logprob_entry(step))
        text, hit_stop = self._matcher.feed(self._detokenizer.last_segment)
        if hit_stop:
            return self._event(text, FinishReason.STOP)
        if self.completion_tokens >= self._request.max_tokens:
            return self.finish(FinishReason.LENGTH, text)
        return self._event(text) if text else None

    def finish(self, reason: FinishReason, text: str = "") -> GenerationEvent:
        """Flush held text and close the stream with `reason`."""
        if reason in (FinishReason.STOP, FinishReason.LENGTH):
            self._detokenizer.finalize()
            tail, hit_stop = self._matcher.feed(self._detokenizer.last_segment)
            text += tail
            if not hit_stop:
                text += self._matcher.flush()
        return self._event(text, reason)

    def _event(self, text: str, reason: FinishReason | None = None) -> GenerationEvent:
        event = GenerationEvent(
            request_id=self._request.request_id,
            text=text,
            token_ids=tuple(self._pending_ids),
            logprobs=tuple(self._pending_logprobs),
            finish_reason=reason,
            usage=self._usage() if reason is not None else None,
            stop_sequence=self._matcher.matched if reason is FinishReason.STOP else None,
            timings=self._timings() if reason is not None else None,
        )
        self._pending_ids.clear()
        self._pending_logprobs.clear()
        return event

    def _usage(self) -> Usage:
        return Usage(len(self._request.prompt_ids), self.completion_tokens, self.cached_tokens)

    def _timings(self) -> Timings:
        return Timings(
            self._request.queued_at, self.scheduled_at, self.first_token_at, time.monotonic()
        )

    def _logprob_entry(self, step: StepOutput) -> TokenLogprob:
        decode = self._tokenizer.decode
        return TokenLogprob(
            token=decode([step.token]),
            token_id=step.token,
            logprob=float(step.logprob or 0.0),
            top=tuple((decode([tid]), tid, lp) for tid, lp in step.top_logprobs),
        )

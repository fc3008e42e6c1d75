"""The spans of one generation request, after OpenTelemetry's GenAI semantic conventions.

```
chat {model}              SERVER  the request, as the seam saw it: a child of an incoming
                                  traceparent; gen_ai.* of the answer (model, usage, finish)
  route                           the rule matched and the chain it runs
  attempt {provider}      CLIENT  one per target tried (INTERNAL for local); a failed one
                                  carries error.type = its failure class
    POST                  CLIENT  an upstream's HTTP call (httpx instrumentation)
    prepare | queue | prefill | decode     a local attempt's phases, from the engine's
                                  own timestamps on its last event (types.Timings)
```

Nothing here runs on the engine thread or per token: the spans are opened when the seam
starts the request and each attempt, looked at once per event on the event loop (as the
request metrics are), and the local phases are made at the end, backdated. Usage (gen_ai.
usage.*) is on the request span only, so a backend that sums it never counts a request twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from mlx_manager.config import LOCAL_PROVIDER
from mlx_manager.errors import ApiError
from mlx_manager.observability.route_telemetry import COOLDOWN, FallbackCount
from mlx_manager.routing.failover import classify
from mlx_manager.routing.providers.base import GenerationProvider
from mlx_manager.routing.rules import Route, Target
from mlx_manager.routing.telemetry import Submit
from mlx_manager.types import (
    EventStream,
    GenerateRequest,
    GenerationEvent,
    PassThroughStream,
    Timings,
)

if TYPE_CHECKING:
    from mlx_manager.observability.otel import Tracing

# GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/).
OPERATION = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
# Ours.
SYSTEM = "mlx_manager"  # gen_ai.provider.name of the request span and of local attempts
REQUEST_ID = "mlx_manager.request_id"  # as echoed in x-request-id
BACKEND = "mlx_manager.backend"  # provider/model that answered
ATTEMPTS = "mlx_manager.attempts"
PROVIDER = "mlx_manager.provider"  # the admin's name of the provider
ATTEMPT = "mlx_manager.attempt"  # its position among the request's attempts, from 0
FAILURE = "mlx_manager.failure_class"
LEFT_MACHINE = "mlx_manager.data_left_machine"
RULE = "mlx_manager.route.rule"
MATCH = "mlx_manager.route.match"
CHAIN = "mlx_manager.route.chain"
PROMPT_TOKENS = "mlx_manager.prompt_tokens"
CACHED_TOKENS = "mlx_manager.cached_tokens"
COMPLETION_TOKENS = "mlx_manager.completion_tokens"
FALLBACK = "mlx_manager.fallback"  # an event on the request span per target passed over
ABORT = "abort"


def operation_of(request: GenerateRequest) -> str:
    return "chat" if request.messages is not None else "text_completion"


def _epoch_offset_ns() -> int:
    """What turns a time.monotonic() reading into the epoch nanoseconds of span times."""
    return time.time_ns() - time.monotonic_ns()


def _error_type(error: BaseException) -> str:
    """A failure class for an ApiError (failover.FailureClass), else the exception's type."""
    if isinstance(error, ApiError):
        return str(classify(error))
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return type(error).__name__


class RequestSpans:
    """The request span and its children; ends when the answering attempt's stream ends, or
    when the seam raises (no target answered, a caller error)."""

    def __init__(self, tracing: Tracing, request: GenerateRequest, fallbacks: FallbackCount):
        self.tracer = tracing.tracer
        self._tracing = tracing
        self._fallbacks = fallbacks
        self.started = time.monotonic()
        self._started_ns = time.time_ns()
        operation = operation_of(request)
        attributes: dict[str, Any] = {
            OPERATION: operation,
            PROVIDER_NAME: SYSTEM,
            REQUEST_MODEL: request.model,
            REQUEST_ID: request.request_id,
            REQUEST_TEMPERATURE: request.sampling.temperature,
            REQUEST_TOP_P: request.sampling.top_p,
        }
        if request.sampling.max_tokens is not None:
            attributes[REQUEST_MAX_TOKENS] = request.sampling.max_tokens
        self.span = self.tracer.start_span(
            f"{operation} {request.model}",
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=self._started_ns,
        )
        self.context = trace.set_span_in_context(self.span)
        self._attempts: list[AttemptSpan] = []
        self._answered = False
        self._ended = False

    def __enter__(self) -> RequestSpans:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None and not self._ended:
            self._ended = True
            _mark_error(self.span, _error_type(error), error)
            self.span.set_attribute(ATTEMPTS, len(self._attempts))
            self.span.end()

    def routed(self, chosen: Route) -> None:
        self._fallbacks.routed(chosen)
        rule = chosen.rule
        attributes: dict[str, Any] = {
            MATCH: rule.match if rule is not None else "none",
            CHAIN: [t.key for t in chosen.targets],
        }
        if rule is not None:
            attributes[RULE] = rule.pattern
        span = self.tracer.start_span(
            "route", context=self.context, attributes=attributes, start_time=self._started_ns
        )
        span.end()

    def attempt(self, target: Target, provider: GenerationProvider) -> Submit:
        async def submit(sent: GenerateRequest) -> EventStream:
            attempt = AttemptSpan(self, target, provider, len(self._attempts))
            self._attempts.append(attempt)
            token = otel_context.attach(attempt.context)  # the HTTP call's parent
            try:
                self._tracing.instrument(provider)
                stream = await provider.submit(sent)
            except BaseException as error:
                attempt.failed(error)
                raise
            finally:
                otel_context.detach(token)
            return TracedStream(stream, attempt)

        return submit

    def failed(self, target: Target, reason: str, error: ApiError | None) -> None:
        if self._fallbacks.failed(target, reason) or reason == COOLDOWN:
            self.span.add_event(
                FALLBACK, {PROVIDER: target.provider, REQUEST_MODEL: target.model, FAILURE: reason}
            )

    def answered(self) -> None:
        self._answered = True
        if self._attempts and self._attempts[-1].ended:
            self._end(self._attempts[-1])

    def attempt_ended(self, attempt: AttemptSpan) -> None:
        """An attempt's span ended: the request's too, if it was the answer."""
        if self._answered and self._attempts and attempt is self._attempts[-1]:
            self._end(attempt)

    def _end(self, answer: AttemptSpan) -> None:
        if self._ended:
            return
        self._ended = True
        span = self.span
        span.set_attribute(ATTEMPTS, len(self._attempts))
        span.set_attribute(BACKEND, answer.target.key)
        span.set_attribute(RESPONSE_MODEL, answer.target.model)
        if answer.first_output is not None:
            span.set_attribute(TIME_TO_FIRST_CHUNK, answer.first_output - self.started)
        event = answer.last
        if event is not None and event.usage is not None:
            span.set_attribute(INPUT_TOKENS, event.usage.prompt_tokens)
            span.set_attribute(OUTPUT_TOKENS, event.usage.completion_tokens)
            if event.usage.cached_tokens:
                span.set_attribute(CACHE_READ_TOKENS, event.usage.cached_tokens)
        span.set_attribute(FINISH_REASONS, [answer.finish_reason])
        if answer.failure is not None:
            span.set_status(Status(StatusCode.ERROR, answer.error_message))
            span.set_attribute(ERROR_TYPE, answer.failure)
        span.end(end_time=answer.ended_ns)


class AttemptSpan:
    """One target tried: opened before its provider's submit, ended by its last event, its
    failure, or an abort."""

    def __init__(
        self, owner: RequestSpans, target: Target, provider: GenerationProvider, index: int
    ):
        self._owner = owner
        self.target = target
        self.started = time.monotonic()
        self.local = target.provider == LOCAL_PROVIDER
        attributes: dict[str, Any] = {
            PROVIDER: target.provider,
            REQUEST_MODEL: target.model,
            ATTEMPT: index,
            **_provider_attributes(provider, self.local),
        }
        self.started_ns = time.time_ns()
        self.span = owner.tracer.start_span(
            f"attempt {target.provider}",
            context=owner.context,
            kind=SpanKind.INTERNAL if self.local else SpanKind.CLIENT,
            attributes=attributes,
            start_time=self.started_ns,
        )
        self.context = trace.set_span_in_context(self.span)
        self.first_output: float | None = None
        self.last: GenerationEvent | None = None
        self.failure: str | None = None
        self.error_message = ""
        self.finish_reason = ABORT
        self.ended = False
        self.ended_ns: int | None = None

    def finished(self, event: GenerationEvent) -> None:
        if self.ended:
            return
        self.last = event
        self.finish_reason = str(event.finish_reason)
        if event.error is not None:
            self._fail(str(classify(event.error.api_error())), event.error.message)
        else:
            self.span.set_attribute(FINISH_REASONS, [self.finish_reason])
        if event.timings is not None:
            self._phases(event.timings, event)
        self._end()

    def failed(self, error: BaseException) -> None:
        if self.ended:
            return
        self.finish_reason = "error"
        self._fail(_error_type(error), str(error))
        self._end()

    def aborted(self) -> None:
        if not self.ended:
            self.span.set_attribute(FINISH_REASONS, [ABORT])
            self._end()

    def _fail(self, failure: str, message: str) -> None:
        self.failure, self.error_message = failure, message
        self.span.set_attribute(FAILURE, failure)
        _mark_error(self.span, failure, message)

    def _end(self) -> None:
        self.ended = True
        self.ended_ns = time.time_ns()
        self.span.end(end_time=self.ended_ns)
        self._owner.attempt_ended(self)

    def _phases(self, timings: Timings, event: GenerationEvent) -> None:
        """The local engine's phases, backdated from its timestamps: prepare (model lease,
        any load, tokenizing), queue, prefill (to the first token), decode."""
        end = timings.finished if timings.finished is not None else time.monotonic()
        usage = event.usage
        marks = [
            ("prepare", self.started, timings.queued, {}),
            ("queue", timings.queued, timings.scheduled, {}),
            (
                "prefill",
                timings.scheduled,
                timings.first_token,
                {PROMPT_TOKENS: usage.prompt_tokens, CACHED_TOKENS: usage.cached_tokens}
                if usage is not None
                else {},
            ),
            (
                "decode",
                timings.first_token,
                end,
                {COMPLETION_TOKENS: usage.completion_tokens} if usage is not None else {},
            ),
        ]
        offset, now_ns = _epoch_offset_ns(), time.time_ns()
        for name, start, stop, attributes in marks:
            if start is None:
                continue
            # Within the attempt's span (the clocks are read apart: a microsecond may differ).
            start_ns = min(max(offset + int(start * 1e9), self.started_ns), now_ns)
            stop_s = stop if stop is not None else end
            stop_ns = min(max(offset + int(stop_s * 1e9), start_ns), now_ns)
            span = self._owner.tracer.start_span(
                name, context=self.context, attributes=attributes, start_time=start_ns
            )
            span.end(end_time=stop_ns)


class TracedStream(PassThroughStream):
    """An attempt's events, passed on as they are; the attempt's span notes the first
    output and ends with the last event (or an abort)."""

    def __init__(self, stream: EventStream, attempt: AttemptSpan) -> None:
        super().__init__(stream)
        self._attempt = attempt

    def abort(self) -> None:
        self._attempt.aborted()
        self._stream.abort()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        attempt = self._attempt
        try:
            async for event in self._stream:
                if attempt.first_output is None and (
                    event.token_ids or event.text or event.reasoning or event.tool_call_deltas
                ):
                    attempt.first_output = time.monotonic()
                if event.finished:
                    attempt.finished(event)  # before the reader sees it: it may stop there
                yield event
        finally:
            attempt.aborted()  # left early (or ended without a last event)


def _provider_attributes(provider: GenerationProvider, local: bool) -> dict[str, Any]:
    if local:
        return {PROVIDER_NAME: SYSTEM, LEFT_MACHINE: False}
    http = getattr(provider, "http", None)
    settings = getattr(http, "settings", None)
    if settings is None:
        return {}
    url = urlsplit(settings.base_url)
    attributes: dict[str, Any] = {
        PROVIDER_NAME: settings.kind,
        SERVER_ADDRESS: url.hostname or "",
        LEFT_MACHINE: bool(getattr(http, "left_machine", True)),
    }
    if url.port is not None:
        attributes[SERVER_PORT] = url.port
    return attributes


def _mark_error(span: Span, error_type: str, error: BaseException | str) -> None:
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, str(error)))

"""Per-request metrics, measured around a request's event stream on the event loop.

Time to first token, the gap between events (per token), end-to-end latency, token counts and
how requests ended, per served model and backend. Observed once per event on the asyncio side:
nothing is added per token on the engine thread. Names follow vLLM's (`vllm:` ->
`mlx_manager:`) so its dashboards fit with the prefix changed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry, Counter, Histogram

from mlx_manager.types import EventStream, GenerateRequest, GenerationEvent, PassThroughStream

PREFIX = "mlx_manager:"
LABELS = ("model_name", "backend")
# vLLM's buckets (seconds), trimmed at both ends.
TTFT_BUCKETS = (0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0)
ITL_BUCKETS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.2, 0.4, 1.0)
E2E_BUCKETS = (0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0)


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ttft = Histogram(
            f"{PREFIX}time_to_first_token_seconds",
            "Time from submission to the first output.",
            LABELS,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.itl = Histogram(
            f"{PREFIX}inter_token_latency_seconds",
            "Time between outputs, per generated token.",
            LABELS,
            buckets=ITL_BUCKETS,
            registry=registry,
        )
        self.e2e = Histogram(
            f"{PREFIX}e2e_request_latency_seconds",
            "Time from submission to the last event.",
            LABELS,
            buckets=E2E_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            f"{PREFIX}prompt_tokens", "Prompt tokens processed.", LABELS, registry=registry
        )
        self.generation_tokens = Counter(
            f"{PREFIX}generation_tokens", "Tokens generated.", LABELS, registry=registry
        )
        self.cached_tokens = Counter(
            f"{PREFIX}prefix_cache_hit_tokens",
            "Prompt tokens served by the prefix cache.",
            LABELS,
            registry=registry,
        )
        self.finished = Counter(
            f"{PREFIX}request_success",
            "Requests ended, by how (stop, length, tool_calls, abort, error).",
            (*LABELS, "finished_reason"),
            registry=registry,
        )

    def observe(self, stream: EventStream, request: GenerateRequest, backend: str) -> EventStream:
        """`stream`, measured as it is read."""
        return _MeasuredStream(stream, self, (request.model, backend))


class _MeasuredStream(PassThroughStream):
    def __init__(self, stream: EventStream, metrics: RequestMetrics, labels: tuple[str, str]):
        super().__init__(stream)
        self._metrics = metrics
        self._labels = labels
        self._started = time.monotonic()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        metrics, labels = self._metrics, self._labels
        last: float | None = None
        ended = False
        try:
            async for event in self._stream:
                now = time.monotonic()
                tokens = len(event.token_ids)
                if last is None and (tokens or event.text or event.finished):
                    metrics.ttft.labels(*labels).observe(now - self._started)
                elif last is not None and tokens:
                    metrics.itl.labels(*labels).observe((now - last) / tokens)
                if tokens or event.text:
                    last = now
                if event.finished:
                    ended = True
                    self._finish(event, now)
                yield event
        finally:
            if not ended:  # the reader left early: the request was aborted
                metrics.finished.labels(*labels, "abort").inc()

    def _finish(self, event: GenerationEvent, now: float) -> None:
        metrics, labels = self._metrics, self._labels
        metrics.e2e.labels(*labels).observe(now - self._started)
        reason = "error" if event.error is not None else str(event.finish_reason)
        metrics.finished.labels(*labels, reason).inc()
        if event.usage is not None:
            metrics.prompt_tokens.labels(*labels).inc(event.usage.prompt_tokens)
            metrics.generation_tokens.labels(*labels).inc(event.usage.completion_tokens)
            metrics.cached_tokens.labels(*labels).inc(event.usage.cached_tokens)

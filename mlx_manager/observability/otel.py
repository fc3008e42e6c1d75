"""OpenTelemetry's SDK, set up for this server (imported only when tracing is on).

A tracer provider of the server's own, not the process-global one, as the metrics registry
is (two servers in one process, as in tests, never share spans): spans are batched and
posted as OTLP/HTTP protobuf to the configured endpoint. With `--logfire`, Logfire's
`configure()` sets up the (global) provider instead and our exporter, if an endpoint is also
set, is added to it.

Upstream calls: each upstream's httpx client is instrumented (opentelemetry-instrumentation-
httpx) with our provider the first time an attempt uses it, and its whole-answer calls (made
on aiohttp directly) get the same client span (client_span.py), so the HTTP call is a client
span under its attempt and carries the W3C `traceparent`: another MLX Manager continues the
trace.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanProcessor,
)

from mlx_manager.observability.request_spans import RequestSpans
from mlx_manager.observability.route_telemetry import FallbackCount
from mlx_manager.types import GenerateRequest

log = logging.getLogger(__name__)

INSTRUMENTATION = "mlx_manager"


class Tracing:
    def __init__(self, provider: trace.TracerProvider, owned: TracerProvider | None) -> None:
        self.provider = provider
        self._owned = owned  # shut down (flushed) at stop; Logfire's is Logfire's
        self.tracer = provider.get_tracer(INSTRUMENTATION)

    @classmethod
    def start(cls, service_name: str, endpoint: str | None, logfire: bool) -> Tracing:
        processors: list[SpanProcessor] = []
        if endpoint is not None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        if logfire:
            return cls._with_logfire(service_name, processors)
        log.info("tracing: spans of %s go to %s", service_name, endpoint)
        return cls.with_processors(service_name, processors)

    @classmethod
    def with_processors(cls, service_name: str, processors: list[SpanProcessor]) -> Tracing:
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        for processor in processors:
            provider.add_span_processor(processor)
        return cls(provider, provider)

    @classmethod
    def with_exporter(cls, exporter: SpanExporter, service_name: str = "mlx-manager") -> Tracing:
        """Each span exported as it ends (tests: an in-memory exporter)."""
        return cls.with_processors(service_name, [SimpleSpanProcessor(exporter)])

    @classmethod
    def _with_logfire(cls, service_name: str, processors: list[SpanProcessor]) -> Tracing:
        import logfire  # checked at configuration time (config.py): installed

        logfire.configure(
            service_name=service_name,
            send_to_logfire="if-token-present",
            console=False,
            additional_span_processors=processors or None,
        )
        log.info("tracing: spans of %s go to Logfire", service_name)
        return cls(trace.get_tracer_provider(), None)

    def request(self, request: GenerateRequest, fallbacks: FallbackCount) -> RequestSpans:
        return RequestSpans(self, request, fallbacks)

    def instrument(self, provider: Any) -> None:
        """Trace an upstream provider's HTTP calls (once per client; local: nothing)."""
        http: Any = getattr(provider, "http", None)
        client = getattr(http, "client", None)
        if client is None:  # local: no HTTP
            return
        if getattr(client, "_is_instrumented_by_opentelemetry", False):
            return
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)
        http.trace(self.provider.get_tracer(INSTRUMENTATION))  # its whole-answer calls

    def shutdown(self) -> None:
        """Export what is still queued (blocking: call it off the event loop)."""
        if self._owned is not None:
            self._owned.shutdown()

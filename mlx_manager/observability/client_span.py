"""A client span around one upstream HTTP call made without httpx (a whole answer, on
aiohttp's session), shaped as the httpx instrumentation shapes a stream's: `POST`, kind
CLIENT, the stable HTTP conventions, ERROR from status 400 up, and the W3C `traceparent`
(and baggage) written into the call's headers so the upstream continues the trace.

Imported only when tracing is on (routing/providers/upstream.py imports it lazily).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer


class CallSpan:
    def __init__(self, span: Span) -> None:
        self._span = span

    def answered(self, status: int) -> None:
        self._span.set_attribute("http.response.status_code", status)
        if status >= 400:
            self._span.set_status(Status(StatusCode.ERROR))
            self._span.set_attribute("error.type", str(status))


@contextmanager
def client_span(
    tracer: Tracer, method: str, url: str, headers: dict[str, str]
) -> Iterator[CallSpan]:
    """The span, current while the call runs; its context goes into `headers`."""
    parts = urlsplit(url)
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "url.full": url,
        "server.address": parts.hostname or "",
        "network.protocol.version": "1.1",
    }
    port = parts.port or (443 if parts.scheme == "https" else 80)
    attributes["server.port"] = port
    with tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        propagate.inject(headers)
        yield CallSpan(span)

"""ASGI middleware: an incoming W3C `traceparent` (and `tracestate`) becomes the current
trace context for the request, so the request's span is a child of the caller's.

Only the trace context is taken (W3C Trace Context), never `baggage`: what a client puts
there would travel on to the upstreams. Installed only when tracing is on; OpenTelemetry is
imported when it is built, not before.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class TraceContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.app = app
        self._context = context
        self._extract = TraceContextTextMapPropagator().extract

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name in (b"traceparent", b"tracestate")
        }
        if not carrier:
            await self.app(scope, receive, send)
            return
        token = self._context.attach(self._extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            self._context.detach(token)

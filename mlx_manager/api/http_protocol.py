"""uvicorn's httptools protocol with the guards a public HTTP server needs.

uvicorn (0.55, httptools) has none of these, and configuring it cannot add them:
- no header size limit: httptools concatenates a header value as it arrives, so one 128 MiB
  header is buffered (quadratically) before any ASGI code, auth included, runs. h11 has
  `h11_max_incomplete_event_size`; httptools has no counterpart.
- no read timeouts: a connection that never finishes its headers, or stalls mid-body, stays
  open for ever (slowloris); `timeout_keep_alive` only starts after a response.
- `limit_concurrency` answers 503 only once a request's headers are complete, so connections
  that never send one are never refused and exhaust file descriptors.

So this subclass guards where the bytes arrive, as nginx does (large_client_header_buffers,
client_header_timeout, client_body_timeout, worker_connections): the request line and headers
are fed to the parser in slices that never exceed `max_header_bytes` (431 above); one timer per
connection covers the header phase (fixed deadline, trickling does not extend it) and the body
phase (reset by every byte; a stall ends the request with 408); a connection beyond
`max_connections` gets 503 at once. The body timer lives here rather than around the ASGI
`receive()` because only the protocol sees every byte, including a body nobody reads any more.

Refusals close lingeringly (FIN, then discard input briefly): closing a socket with unread
input sends a reset, which can destroy the 431 or 503 before the client reads it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

# How long a refused connection may keep sending (discarded) after our FIN before we close.
LINGER_S = 1.0
# Warn about refused connections at most this often: a flood must not flood the log too.
_WARN_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus a header size limit, read timeouts and a connection cap."""

    limits: ClassVar[HttpLimits]
    _last_warning: ClassVar[dict[str, float]] = {}  # message -> when last logged

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_bytes = 0  # of the request whose headers are being read
        self._in_body = False
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False  # a refusal was sent; input is only drained

    # Connection lifecycle

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._warn("connection refused: %d connections open", len(self.connections))
            self._refuse(503, "Too many connections.", retry_after=True)
            return
        # A fresh connection must send its headers in time too (uvicorn arms nothing here).
        self._arm(self.limits.header_timeout_s, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        while data and not self.transport.is_closing():
            if self._in_body:
                self._arm(self.limits.body_timeout_s, self._body_timed_out)
                piece, data = data, b""
            else:
                budget = self.limits.max_header_bytes - self._header_bytes
                if budget <= 0:
                    self._warn("request headers over %d bytes: 431", self.limits.max_header_bytes)
                    if self._response_in_flight():  # a pipelined request: a 431 would corrupt it
                        self.transport.close()
                    else:
                        self._refuse(431, "Request header fields too large.")
                    return
                if self._timer is None:
                    self._arm(self.limits.header_timeout_s, self._header_timed_out)
                # Never hand the parser more header bytes than the limit allows.
                piece, data = data[:budget], data[budget:]
                self._header_bytes += len(piece)
            super().data_received(piece)
            if self.transport.get_protocol() is not self:  # upgraded to a WebSocket
                return

    # Parser callbacks: track the phase (headers, body) of the current request

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:
            self._arm(self.limits.header_timeout_s, self._header_timed_out)

    def on_headers_complete(self) -> None:
        self._header_bytes = 0
        self._in_body = True
        self._arm(self.limits.body_timeout_s, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._cancel_timer()
        super().on_message_complete()

    # Timeouts

    def _header_timed_out(self) -> None:
        self._timer = None
        if self._header_bytes and not self._response_in_flight():
            self._refuse(408, "Request headers not received in time.")
        else:  # nothing asked yet, or a response in flight that a 408 would corrupt
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            # The stall is ours (backpressure, or the client awaits our 100 Continue).
            self._arm(self.limits.body_timeout_s, self._body_timed_out)
            return
        if cycle is not None and not cycle.response_complete:
            started = cycle.response_started
            # The app's receive() now returns http.disconnect and its sends are dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            if not started:
                self._refuse(408, "Request body not received in time.")
                return
        self.transport.close()

    # Helpers

    def _refuse(self, status: int, message: str, retry_after: bool = False) -> None:
        """Answer `status` and close: send FIN, drain input for LINGER_S, then close.

        The client's own FIN ends the linger early (eof_received returns None: close).
        """
        body = message.encode("ascii")
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        if retry_after:
            content.append(b"retry-after: 1\r\n")
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self._closing = True
        self.flow.resume_reading()  # drain even if backpressure had paused reading
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._arm(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def _response_in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self, delay: float, callback: Any) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_warning.get(message, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._last_warning[message] = now
            self.logger.warning(message + " (repeats are not logged for %gs)", *args, _WARN_EVERY_S)


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for `uvicorn.Config(http=...)`; uvicorn builds it with no extra args."""

    class BoundGuardedHttpToolsProtocol(GuardedHttpToolsProtocol):
        pass

    BoundGuardedHttpToolsProtocol.limits = limits
    return BoundGuardedHttpToolsProtocol

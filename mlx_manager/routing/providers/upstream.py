"""What both upstream dialects share: one pooled client per provider (httpx's API, aiohttp's
connections underneath; a whole answer is posted on aiohttp directly), the POST, HTTP errors
as ApiErrors, SSE (httpx-sse: a small, well-kept parser of the SSE framing, which is subtler
than `data:` lines: multi-line data, comments, CRLF), timeouts, abort.

No retries and no redirects: MLX Manager's failover is the only retry loop, and a redirect
could carry the key to another host. The URL and key come from the admin's configuration,
never from a request, and neither appears in a message sent to a client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_sse import EventSource, ServerSentEvent

from mlx_manager.config import ProviderSettings
from mlx_manager.errors import (
    ApiError,
    ErrorInfo,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mlx_manager.protocols.upstream_errors import upstream_error
from mlx_manager.types import FinishReason, GenerationEvent

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

MAX_ERROR_BODY_BYTES = 64 * 1024
DRAIN_TIMEOUT_S = 1.0
LOOPBACK_HOSTS = ("localhost", "127.", "::1", "[::1]")
# What a failed call raises: httpx's errors (the transport maps aiohttp's known ones) and
# aiohttp's others (a malformed answer, say), which the transport lets through.
TRANSPORT_ERRORS = (httpx.HTTPError, aiohttp.ClientError)


class Decoder(Protocol):
    """A dialect's stream decoder (protocols/*_upstream.py)."""

    @property
    def started(self) -> bool:
        """Whatever precedes the output has been read (Anthropic's message_start)."""
        ...

    @property
    def finished(self) -> bool: ...

    @property
    def prompt_tokens(self) -> int: ...

    def feed(self, data: dict[str, Any]) -> GenerationEvent | None: ...

    def end(self) -> GenerationEvent: ...


def upstream_key_from_env(settings: ProviderSettings) -> str:
    """The key a config-file provider names by environment variable ("" when none)."""
    return os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""


@dataclass(frozen=True, slots=True)
class WholeResponse:
    """A whole-answer call's status, headers and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class HttpUpstream:
    """One provider's HTTP side."""

    def __init__(
        self,
        settings: ProviderSettings,
        auth_headers: Mapping[str, str],
        secrets: tuple[str, ...],
    ) -> None:
        self.settings = settings
        self.name = settings.name
        t = settings.timeouts
        self._transport = _transport()
        self._client = httpx.AsyncClient(
            transport=self._transport,
            headers=dict(auth_headers),
            # read None: first-token, idle and total limits are kept per event below.
            timeout=httpx.Timeout(connect=t.connect_s, read=None, write=t.idle_s, pool=t.connect_s),
            follow_redirects=False,
            trust_env=False,  # no proxy or netrc credentials picked up from the environment
        )
        self._secrets = (*secrets, settings.base_url)
        host = httpx.URL(settings.base_url).host
        self._left_machine = not any(host == h or host.startswith(h) for h in LOOPBACK_HOSTS)
        self._urls: dict[str, httpx.URL] = {}  # parsed once: httpx parses a str per request
        self._json_headers = {**auth_headers, "Content-Type": "application/json"}
        self._connect_timeout = aiohttp.ClientTimeout(
            total=None, connect=t.connect_s, sock_connect=t.connect_s
        )
        self._tracer: Tracer | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client (tracing instruments it)."""
        return self._client

    @property
    def left_machine(self) -> bool:
        """Whether the upstream is off this machine (asked several times per request)."""
        return self._left_machine

    def url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.settings.base_url + path)
        return url

    def trace(self, tracer: Tracer) -> None:
        """Make a client span of each whole-answer call (a stream's are the httpx
        instrumentation's) and send its traceparent."""
        self._tracer = tracer

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post_json(
        self, path: str, body: dict[str, Any], deadline_s: float | None = None
    ) -> Any:
        """A non-streamed POST's JSON answer (count_tokens; a whole answer within
        `deadline_s`, default the total timeout); errors as ApiErrors, never followed."""
        try:
            async with asyncio.timeout(deadline_s or self.settings.timeouts.total_s):
                response = await self._post(path, body)
        except aiohttp.ClientError as exc:  # its connect timeout included
            raise self._unreachable(exc) from None
        except TimeoutError:
            raise self._timeout("whole answer" if deadline_s else "answer") from None
        if response.status_code >= 300:
            raise self._status_error(response, response.content[:MAX_ERROR_BODY_BYTES])
        try:
            return response.json()
        except ValueError:
            raise UpstreamUnavailable(f"upstream {self.name!r} sent bad JSON") from None

    async def _post(self, path: str, body: dict[str, Any]) -> WholeResponse:
        """POST, the whole answer read, on aiohttp's session under the transport (one pool
        for both ways of calling). Not through httpx: for one JSON body its request and
        response objects cost more CPU than the call itself (~0.1-0.2 ms a request)."""
        url = self.url(path)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        if self._tracer is None:
            return await self._send(url, content, self._json_headers)
        from mlx_manager.observability.client_span import client_span

        headers = dict(self._json_headers)
        with client_span(self._tracer, "POST", str(url), headers) as span:
            answer = await self._send(url, content, headers)
            span.answered(answer.status_code)
        return answer

    async def _send(
        self, url: httpx.URL, content: bytes, headers: Mapping[str, str]
    ) -> WholeResponse:
        async with self._session().post(
            str(url),
            data=content,
            headers=headers,
            allow_redirects=False,
            timeout=self._connect_timeout,
        ) as response:
            return WholeResponse(response.status, response.headers, await response.read())

    def _session(self) -> aiohttp.ClientSession:
        transport = self._transport
        if not isinstance(transport.client, aiohttp.ClientSession):
            transport.client = transport.get_client()  # as the transport does on first use
        return transport.client

    async def open(
        self, path: str, body: dict[str, Any], decoder: Decoder, request_id: str
    ) -> UpstreamStream:
        """POST a streamed request: an ApiError if it fails before streaming, else its stream."""
        loop = asyncio.get_running_loop()
        t = self.settings.timeouts
        started = loop.time()
        request = self._client.build_request("POST", self.url(path), json=body)
        try:
            async with asyncio.timeout(min(t.first_token_s, t.total_s)):
                # the transport, not AsyncClient.send: as in _post
                response = await self._transport.handle_async_request(request)
        except (TimeoutError, httpx.TimeoutException) as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise self._unreachable(exc) from None
            raise self._timeout("first token") from None
        except TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400 or 300 <= response.status_code < 400:
            try:
                content = await _bounded_body(response)
            finally:
                await response.aclose()
            raise self._status_error(response, content)
        stream = UpstreamStream(self, response, decoder, started, request_id)
        await stream.prime()
        return stream

    async def probe(self, path: str) -> str | None:
        """GET a cheap listing (the model list) to see the upstream answers and takes the key:
        None when it does, else why not (no URL, no key in the text)."""
        try:
            async with asyncio.timeout(self.settings.timeouts.connect_s + 5):
                response = await self._client.get(self.url(path))
        except (TimeoutError, *TRANSPORT_ERRORS) as exc:
            return f"could not be reached ({type(exc).__name__})"
        if response.status_code in (401, 403):
            return f"refused the API key (HTTP {response.status_code})"
        if response.status_code >= 500 or 300 <= response.status_code < 400:
            return f"answered HTTP {response.status_code}"
        return None  # 2xx, or a 4xx such as 404 from a server without a model list

    def _status_error(self, response: httpx.Response | WholeResponse, content: bytes) -> ApiError:
        status = response.status_code
        if 300 <= status < 400:
            return UpstreamUnavailable(
                f"upstream {self.name!r} answered with a redirect, which is not followed"
            )
        retry_after = response.headers.get("retry-after")
        return upstream_error(
            self.name, status, content, retry_after=retry_after, secrets=self._secrets
        )

    def _unreachable(self, exc: Exception) -> ApiError:
        # The exception's text names the URL: only its type goes to the client.
        log.warning("upstream %s unreachable: %r", self.name, exc)
        return UpstreamUnavailable(
            f"upstream {self.name!r} could not be reached ({type(exc).__name__})"
        )

    def _timeout(self, what: str) -> ApiError:
        return UpstreamTimeout(f"upstream {self.name!r} timed out waiting for the {what}")

    def error_event(self, request_id: str, error: ApiError) -> GenerationEvent:
        return GenerationEvent(
            request_id, finish_reason=FinishReason.ERROR, error=ErrorInfo.of(error)
        )


def _transport() -> AiohttpTransport:
    """httpx's requests and responses, sent and read by aiohttp (httpx-aiohttp, the transport
    the OpenAI SDK ships as its aiohttp option). Why: aiohttp's C parser and writer cost
    ~0.2-0.4 ms less CPU per upstream call than httpcore's h11 (a pass-through's largest
    share; benchmarks/results/h200_router_overhead_4/). Same limits and TLS as httpx's own
    transport (certifi's CAs, no proxy or netrc from the environment); aiohttp's session is
    made on first use, on the event loop."""
    return AiohttpTransport(
        verify=httpx.create_ssl_context(trust_env=False),
        trust_env=False,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),  # httpx's own
    )


async def _bounded_body(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_ERROR_BODY_BYTES:
            break
    return bytes(body[:MAX_ERROR_BODY_BYTES])


class UpstreamStream:
    """An upstream's SSE answer as an EventStream; leaving early or abort() closes it."""

    def __init__(
        self,
        upstream: HttpUpstream,
        response: httpx.Response,
        decoder: Decoder,
        started: float,
        request_id: str,
    ) -> None:
        self._upstream = upstream
        self._response = response
        self._decoder = decoder
        self._sse = EventSource(response).aiter_sse()
        t = upstream.settings.timeouts
        self._first_deadline = started + t.first_token_s
        self._total_deadline = started + t.total_s
        self._idle_s = t.idle_s
        self._got_output = False
        self._buffered: list[GenerationEvent] = []
        self._aborted = False
        self._closer: asyncio.Task[None] | None = None
        self.request_id = request_id

    @property
    def prompt_tokens(self) -> int:
        return self._decoder.prompt_tokens

    async def prime(self) -> None:
        """Read what comes before the output (Anthropic's message_start, with the prompt's
        token count); what output arrives meanwhile is kept for iteration."""
        while not self._decoder.started:
            event = await self._next()
            if event is None:
                return
            self._buffered.append(event)
            if event.finished or event.text or event.reasoning or event.tool_call_deltas:
                return

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        complete = False
        try:
            while self._buffered:
                event = self._buffered.pop(0)
                yield event
                if event.finished:
                    complete = True
                    return
            while True:
                following = await self._next()
                if following is None:
                    return
                yield following
                if following.finished:
                    complete = True
                    return
        finally:
            if complete and not self._aborted:
                await self._drain()
            await self._response.aclose()

    async def _drain(self) -> None:
        """Read what follows the last event (`[DONE]`'s line ends, the chunked body's end):
        a response closed before its end takes its connection with it, and the next request
        would pay a new TCP (and TLS) handshake. A bounded wait: a slow tail is dropped."""
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                async for _ in self._sse:
                    pass
        except (TimeoutError, *TRANSPORT_ERRORS, ValueError):
            pass  # the connection is not reused; nothing is lost

    async def _next(self) -> GenerationEvent | None:
        """The next event: output, the last one, or an error event (None: aborted)."""
        loop = asyncio.get_running_loop()
        while not self._aborted:
            now = loop.time()
            limit = now + self._idle_s if self._got_output else self._first_deadline
            what = "next event" if self._got_output else "first token"
            if self._total_deadline <= limit:
                limit, what = self._total_deadline, "whole answer"
            try:
                async with asyncio.timeout(max(limit - now, 0.0)):
                    sse = await anext(self._sse, None)
            except TimeoutError:
                return self._error(self._upstream._timeout(what))
            except Exception as exc:
                if self._aborted:  # abort() closed the response under the read
                    return None
                if not isinstance(exc, (*TRANSPORT_ERRORS, ValueError)):
                    raise
                return self._error(self._upstream._unreachable(exc))
            event = self._decode(sse)
            if event is not None:
                self._got_output = True
                return event
        return None

    def _decode(self, sse: ServerSentEvent | None) -> GenerationEvent | None:
        decoder = self._decoder
        if sse is None:  # the connection ended
            if decoder.finished:
                return decoder.end()
            name = self._upstream.name
            return self._error(UpstreamUnavailable(f"upstream {name!r} ended the stream early"))
        if sse.data == "[DONE]":  # OpenAI's end: the usage chunk came before it
            return decoder.end()
        if not sse.data:
            return None
        try:
            data = json.loads(sse.data)
        except ValueError:
            return self._error(
                UpstreamUnavailable(f"upstream {self._upstream.name!r} sent bad JSON")
            )
        return decoder.feed(data) if isinstance(data, dict) else None

    def _error(self, error: ApiError) -> GenerationEvent:
        return self._upstream.error_event(self.request_id, error)

    def abort(self) -> None:
        if not self._aborted:
            self._aborted = True
            self._closer = asyncio.ensure_future(self._response.aclose())

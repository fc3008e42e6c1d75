"""Streaming OpenAI-style completions, timed chunk by chunk as a client sees them.

`stream_chat` is the blocking client of one request (single-stream decode); `stream_request`
the asyncio one that load generators run many of at once, filling a `RequestRecord` as the
stream arrives so that a cut-off request still tells what it got. Both read the same SSE
framing: `data: {json}` lines, `data: [DONE]` at the end, anything else ignored.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from benchmarks.lib.prompts import Prompt, ban_bias

DONE = "[DONE]"


def sse_data(line: str) -> str | None:
    """The payload of a `data:` line; None for blank separators, comments and `event:` lines."""
    return line[5:].strip() if line.startswith("data:") else None


def content_of(chunk: dict[str, Any], endpoint: str) -> tuple[str, str | None]:
    """(text, finish_reason) of the chunk's first choice (chat delta or completion text)."""
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    if endpoint == "chat":
        text = (choice.get("delta") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    return text, choice.get("finish_reason")


# ---------------------------------------------------------------- one blocking stream


@dataclass(slots=True)
class StreamTiming:
    """perf_counter times of one stream: sent, first and last content chunk, finish chunk."""

    sent: float
    first: float | None = None
    last: float | None = None
    finish_at: float | None = None
    chunks: int = 0  # non-empty content chunks
    usage: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    text: list[str] = field(default_factory=list)

    def add(self, chunk: dict[str, Any], now: float) -> None:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        text, finish = content_of(chunk, "chat")
        if text:
            self.chunks += 1
            self.first = now if self.first is None else self.first
            self.last = now
            self.text.append(text)
        if finish:
            self.finish_reason = finish
            self.finish_at = now


def stream_chat(client: httpx.Client, payload: dict[str, Any]) -> StreamTiming:
    """One streamed chat completion; raises on an error event or a stream without usage."""
    timing = StreamTiming(time.perf_counter())
    with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            data = sse_data(line)
            if data is None:
                continue
            if data == DONE:
                break
            now = time.perf_counter()
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"server error: {chunk['error']}")
            timing.add(chunk, now)
    if timing.first is None or not timing.usage:
        raise RuntimeError("the stream had no content or no usage chunk")
    return timing


# ---------------------------------------------------------------- many concurrent streams


@dataclass(slots=True)
class RequestRecord:
    """One request, filled in as its stream arrives (partial when it is cut off)."""

    index: int
    start: float = 0.0  # perf_counter when sent
    end: float | None = None
    status: int | None = None
    first: float | None = None  # first non-empty content chunk
    last: float | None = None  # last non-empty content chunk
    itls: list[float] = field(default_factory=list)
    chunks: int = 0  # non-empty content chunks
    usage_completion: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    done: bool = False  # saw [DONE]
    error: str | None = None  # kind: http, connection, timeout, level_timeout, ...
    detail: str = ""

    @property
    def tokens(self) -> int:
        return self.usage_completion if self.usage_completion is not None else self.chunks

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.start

    @property
    def tpot(self) -> float | None:
        if self.first is None or self.last is None or self.tokens < 2:
            return None
        return (self.last - self.first) / (self.tokens - 1)

    def fail(self, kind: str, detail: str) -> None:
        self.error, self.detail = kind, detail

    def add(self, chunk: dict[str, Any], now: float, endpoint: str) -> None:
        """Book one parsed chunk that arrived at `now`."""
        text, finish = content_of(chunk, endpoint)
        if text:
            if self.last is not None:
                self.itls.append(now - self.last)
            if self.first is None:
                self.first = now
            self.last = now
            self.chunks += 1
        if finish:
            self.finish_reason = finish
        usage = chunk.get("usage")
        if usage:
            self.usage_completion = usage.get("completion_tokens")
            self.prompt_tokens = usage.get("prompt_tokens")
            details = usage.get("prompt_tokens_details") or {}
            self.cached_tokens = details.get("cached_tokens")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["itls"]
        out["tokens"] = self.tokens
        out["ttft_s"] = self.ttft
        out["tpot_s"] = self.tpot
        out["latency_s"] = None if self.end is None else self.end - self.start
        out["itl_s"] = [round(x, 6) for x in self.itls]
        return out


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to send: server, model, endpoint, prompt form, sampling, banned ids."""

    base: str  # http://host:port
    model: str
    endpoint: str  # completions | chat
    prompt_format: str  # text | ids
    temperature: float
    eos_ids: tuple[int, ...]
    usage: bool

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions"

    def payload(self, prompt: Prompt, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "stream": True,
        }
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt.text}]
        else:
            body["prompt"] = prompt.ids if self.prompt_format == "ids" else prompt.text
        if self.usage:
            body["stream_options"] = {"include_usage": True}
        if self.eos_ids:
            body["logit_bias"] = ban_bias(self.eos_ids)
        return body


async def _read_stream(response: httpx.Response, record: RequestRecord, endpoint: str) -> None:
    async for line in response.aiter_lines():
        now = time.perf_counter()
        data = sse_data(line)
        if data is None:
            continue
        if data == DONE:
            record.done = True
            return
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            return record.fail("bad_chunk", data[:300])
        if "error" in chunk:
            return record.fail("stream_error", json.dumps(chunk)[:300])
        record.add(chunk, now, endpoint)


async def stream_request(
    client: httpx.AsyncClient,
    target: Target,
    prompt: Prompt,
    max_tokens: int,
    record: RequestRecord,
) -> None:
    """Send one streaming request; fill `record` as chunks arrive. Raises nothing but
    CancelledError (the caller's timeouts)."""
    record.start = time.perf_counter()
    body = target.payload(prompt, max_tokens)
    try:
        async with client.stream("POST", target.base + target.path, json=body) as response:
            record.status = response.status_code
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return record.fail("http", f"{response.status_code}: {text[:300]}")
            await _read_stream(response, record, target.endpoint)
    except httpx.TimeoutException as e:
        record.fail("timeout", f"{type(e).__name__}: {e}")
    except (httpx.TransportError, httpx.StreamError) as e:
        record.fail("connection", f"{type(e).__name__}: {e}")
    finally:
        record.end = time.perf_counter()
    if record.error is None:
        if not record.done:
            record.error = "no_done"
        elif record.tokens < max_tokens:
            record.fail("short", f"{record.tokens} < {max_tokens} tokens ({record.finish_reason})")


async def timed_request(
    client: httpx.AsyncClient,
    target: Target,
    prompt: Prompt,
    max_tokens: int,
    record: RequestRecord,
    timeout: float,
) -> None:
    """`stream_request` cut off after `timeout` seconds (booked as a timeout)."""
    try:
        await asyncio.wait_for(stream_request(client, target, prompt, max_tokens, record), timeout)
    except TimeoutError:
        record.fail("timeout", f"request ran past {timeout:.0f}s")
        record.end = time.perf_counter()


def anthropic_payload(
    model: str, text: str, max_tokens: int, stream: bool = True
) -> dict[str, Any]:
    """An Anthropic /v1/messages body with one user message."""
    return {
        "model": model,
        "max_tokens": max_tokens,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }

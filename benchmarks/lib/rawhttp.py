"""HTTP/1.1 by hand over asyncio streams: requests that arrive together, replies read raw.

httpx opens a connection when a request is sent, so a "burst" of httpx requests reaches the
server spread over the connects. Here the connections are opened first and every request is
then written in one loop, so they arrive within a millisecond or two; each reply is read to
the end (`Connection: close`) with its status line and headers as sent, chunked bodies
decoded. Loopback benchmarks only: no TLS, no redirects, no pooling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RawRequest:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    tag: str = ""  # the caller's label (e.g. which API)

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.body or self.method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def json_request(
    path: str, body: dict[str, Any], tag: str = "", headers: dict[str, str] | None = None
) -> RawRequest:
    data = json.dumps(body).encode()
    return RawRequest(
        "POST", path, data, {"Content-Type": "application/json", **(headers or {})}, tag
    )


@dataclass(slots=True)
class RawReply:
    tag: str = ""
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)  # names lowercased
    body: bytes = b""
    elapsed_s: float | None = None  # request written -> reply read to the end
    error: str | None = None  # connect / timeout / reset / bad_reply

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode(errors="replace")


def dechunk(data: bytes) -> bytes:
    """A `Transfer-Encoding: chunked` body decoded (what arrived of it, if cut off)."""
    out, pos = bytearray(), 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        size = int(data[pos:end].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    return bytes(out)


def parse_reply(raw: bytes, reply: RawReply) -> None:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not sep or len(parts) < 2 or not parts[1].isdigit():
        reply.error = "bad_reply"
        reply.body = raw[:300]
        return
    reply.status = int(parts[1])
    for line in lines[1:]:
        name, _, value = line.partition(":")
        reply.headers[name.strip().lower()] = value.strip()
    chunked = "chunked" in reply.headers.get("transfer-encoding", "")
    reply.body = dechunk(body) if chunked else body


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_connections(host: str, port: int, n: int, timeout: float) -> list[Connection]:
    """`n` connections opened at once (all or an error)."""
    coros = (asyncio.open_connection(host, port) for _ in range(n))
    return list(await asyncio.wait_for(asyncio.gather(*coros), timeout))


async def read_reply(reader: asyncio.StreamReader, reply: RawReply, sent: float) -> None:
    """Read to EOF (the server closes after a `Connection: close` reply) and parse."""
    chunks = []
    try:
        while data := await reader.read(65536):
            chunks.append(data)
    except (ConnectionError, OSError) as e:
        reply.error = f"reset: {type(e).__name__}"
    reply.elapsed_s = time.perf_counter() - sent
    if chunks:
        parse_reply(b"".join(chunks), reply)
    elif reply.error is None:
        reply.error = "empty_reply"


async def simultaneous(
    host: str, port: int, requests: list[RawRequest], timeout: float
) -> tuple[list[RawReply], float]:
    """Open one connection per request, then write every request in one loop; each reply
    read within `timeout` seconds of the writes. Returns the replies and the seconds the
    writes took (how close together the requests arrived)."""
    connections = await open_connections(host, port, len(requests), timeout)
    replies = [RawReply(r.tag) for r in requests]
    sent = time.perf_counter()
    for (_, writer), request in zip(connections, requests, strict=True):
        writer.write(request.encode(f"{host}:{port}"))
    spread = time.perf_counter() - sent
    reads = [
        read_reply(reader, reply, sent)
        for (reader, _), reply in zip(connections, replies, strict=True)
    ]
    tasks = [asyncio.create_task(r) for r in reads]
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for reply, task in zip(replies, tasks, strict=True):
        if task in pending:
            reply.error = reply.error or "timeout"
    for _, writer in connections:
        writer.close()
    return replies, spread

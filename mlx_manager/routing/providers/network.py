"""httpcore's network layer over asyncio streams, for the upstream clients.

httpx (through httpcore) reads and writes its sockets through a pluggable network backend;
the default one goes through anyio, which on asyncio costs a cancel scope, a checkpoint and
an exception map per read and write, and a typed-attribute lookup per connection check. On a
pass-through that was ~5% of the router's busy samples (py-spy, canned upstream). This backend
does the same on asyncio's own streams (TCP, TLS by `start_tls`), and adds one thing: writes
are kept until the next read, so a request's head and body leave as one segment and the
upstream wakes once (httpcore writes the whole request before it reads the answer; a large
body is written as it comes, past WRITE_BUFFER_BYTES).

The backend is httpcore's documented extension point (`network_backend=`); the pool, HTTP/1.1
and the exceptions httpx maps are httpcore's and httpx's as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

WRITE_BUFFER_BYTES = 64 * 1024  # kept until the next read up to this; larger is written at once
SocketOption = (  # httpcore's SOCKET_OPTION
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


@contextlib.contextmanager
def _mapped(timeout_error: type[Exception], os_error: type[Exception]) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise timeout_error(str(exc) or "timed out") from exc
    except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
        raise os_error(str(exc) or type(exc).__name__) from exc


class AsyncioStream(AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            if self._pending:
                await self._flush(timeout)
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._pending.append(buffer)
        self._pending_bytes += len(buffer)
        if self._pending_bytes > WRITE_BUFFER_BYTES:
            with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
                await self._flush(timeout)

    async def _flush(self, timeout: float | None) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._writer.write(data)
        if timeout is None:
            await self._writer.drain()
        else:
            async with asyncio.timeout(timeout):
                await self._writer.drain()

    async def aclose(self) -> None:
        # Not awaiting wait_closed(): a TLS peer that never answers the close would hold an
        # abort for the SSL shutdown timeout; the transport finishes closing on its own.
        self._pending.clear()
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            try:
                async with asyncio.timeout(timeout):
                    await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
            except BaseException:
                self._writer.close()
                raise
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":
            # A kept-alive connection the server closed (or wrote to unasked) is not reused.
            unread = getattr(self._reader, "_buffer", b"")  # read off the socket already
            return self._reader.at_eof() or bool(unread) or _readable(self.get_extra_info("socket"))
        return None


def _readable(sock: socket.socket | None) -> bool:
    if sock is None:
        return True
    return bool(httpcore._utils.is_socket_readable(sock))


class AsyncioBackend(AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                local = (local_address, 0) if local_address else None
                reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

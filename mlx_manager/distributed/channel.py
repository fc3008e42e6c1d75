"""Length-prefixed JSON messages over one TCP connection: rank 0's step channel.

Each message is a 4-byte big-endian length, then that many bytes of UTF-8 JSON (an object).
JSON rather than pickle: a follower must never run code that came over the network, and the
messages are plain data (ids, token ids, block tables). A message larger than
`MAX_MESSAGE_BYTES` is refused on both sides.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_HEADER = struct.Struct(">I")
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a step of 8192 tokens with 64 long tables is ~1 MB

Message = dict[str, Any]


class ChannelClosed(ConnectionError):
    """The peer closed the connection (or it broke)."""


def encode(message: Message) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(body)} bytes is over the channel's limit")
    return _HEADER.pack(len(body)) + body


def send(sock: socket.socket, message: Message) -> None:
    try:
        sock.sendall(encode(message))
    except OSError as exc:
        raise ChannelClosed(f"send failed: {exc}") from exc


def receive(sock: socket.socket) -> Message:
    """The next message; ChannelClosed at end of stream or on a broken connection."""
    (length,) = _HEADER.unpack(_read_exactly(sock, _HEADER.size))
    if length > MAX_MESSAGE_BYTES:
        raise ChannelClosed(f"message of {length} bytes announced: over the limit")
    message = json.loads(_read_exactly(sock, length))
    if not isinstance(message, dict):
        raise ChannelClosed("a message must be a JSON object")
    return message


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except OSError as exc:
            raise ChannelClosed(f"receive failed: {exc}") from exc
        if not chunk:
            raise ChannelClosed("the peer closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)

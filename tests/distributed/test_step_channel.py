"""The step channel's framing: length-prefixed JSON objects, a closed peer is ChannelClosed."""

from __future__ import annotations

import socket
import threading

import pytest

from mlx_manager.distributed import channel
from mlx_manager.distributed.channel import ChannelClosed


def test_messages_cross_in_order_and_a_closed_peer_ends_the_stream() -> None:
    left, right = socket.socketpair()
    big = {"op": "step", "chunks": [["r", 0, 3, list(range(100_000)), [1, 2], True]]}
    sender = threading.Thread(  # larger than the socket's buffer: sent while read
        target=lambda: [channel.send(left, m) for m in ({"op": "hello", "rank": 1}, big)]
    )
    sender.start()
    assert channel.receive(right) == {"op": "hello", "rank": 1}
    assert channel.receive(right) == big
    sender.join()
    left.close()
    with pytest.raises(ChannelClosed):
        channel.receive(right)
    right.close()


def test_a_frame_that_is_not_an_object_or_too_large_is_refused() -> None:
    left, right = socket.socketpair()
    body = b"[1, 2]"
    left.sendall(len(body).to_bytes(4, "big") + body)
    with pytest.raises(ChannelClosed, match="JSON object"):
        channel.receive(right)
    left.sendall((channel.MAX_MESSAGE_BYTES + 1).to_bytes(4, "big"))
    with pytest.raises(ChannelClosed, match="over the limit"):
        channel.receive(right)
    left.close()
    right.close()

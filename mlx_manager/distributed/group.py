"""Joining the mx.distributed group, and telling every rank where rank 0's step channel is.

The launcher (`mlx.launch`, or MLX_RANK + MLX_HOSTFILE set by hand for the ring backend)
decides the ranks; `mx.distributed.init` joins them. Rank 0 then shares its channel's address
and a random token through the group itself (an all-sum where only rank 0 contributes): only
members of the group learn the token, so only they can join the channel.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

_HOST_BYTES = 256
_TOKEN_BYTES = 16


@dataclass(frozen=True, slots=True)
class ChannelAddress:
    host: str
    port: int
    token: str  # hex


def join(backend: str) -> Any:
    """This process's group (strict: a lone process with no launcher is an error)."""
    group = mx.distributed.init(strict=True, backend=backend)
    if group.size() < 2:
        raise RuntimeError("the distributed group has one rank: start it with mlx.launch")
    return group


def default_host() -> str:
    """Rank 0's address as the launcher knows it: the ring hostfile's first entry, else
    NCCL_HOST_IP, else loopback."""
    hostfile = os.environ.get("MLX_HOSTFILE")
    if hostfile:
        try:
            with open(hostfile, encoding="utf-8") as handle:
                hosts = json.load(handle)
            first = hosts[0][0] if isinstance(hosts[0], list) else hosts[0]
            return str(first).rsplit(":", 1)[0]
        except (OSError, ValueError, IndexError, KeyError, TypeError):
            pass
    return os.environ.get("NCCL_HOST_IP") or "127.0.0.1"


def new_token() -> str:
    return secrets.token_hex(_TOKEN_BYTES)


def share_address(group: Any, address: ChannelAddress | None) -> ChannelAddress:
    """A collective: rank 0 passes its address, the others None; every rank gets rank 0's."""
    size = _HOST_BYTES + 2 + _TOKEN_BYTES
    values = [0] * size
    if address is not None:
        encoded = address.host.encode()
        if len(encoded) > _HOST_BYTES:
            raise ValueError("the distributed host name is too long")
        values[: len(encoded)] = list(encoded)
        values[_HOST_BYTES : _HOST_BYTES + 2] = [address.port >> 8, address.port & 0xFF]
        values[_HOST_BYTES + 2 :] = list(bytes.fromhex(address.token))
    total = mx.distributed.all_sum(mx.array(values, dtype=mx.int32), group=group, stream=mx.cpu)
    shared: list[int] = total.tolist()  # type: ignore[assignment]
    host = bytes(shared[:_HOST_BYTES]).rstrip(b"\0").decode()
    port = shared[_HOST_BYTES] << 8 | shared[_HOST_BYTES + 1]
    return ChannelAddress(host, port, bytes(shared[_HOST_BYTES + 2 :]).hex())

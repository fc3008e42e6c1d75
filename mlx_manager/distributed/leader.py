"""Rank 0 of a sharded group: the step channel to the followers, and the engine's `ShardGroup`.

Why a TCP side channel and not the group's own collectives: a step must reach the followers
before its forward, and a collective would have to be evaluated on the engine thread before
every step (a blocking round trip through MLX's scheduler); a socket send is a buffered write.
It works the same under every backend (ring, MPI, NCCL, JACCL), and it tells rank 0 at once,
even while idle, that a follower is gone (its connection closes), which a collective only says
when one runs (the ring backend raises; NCCL may hang). The channel's address and token travel
through the group (`group.share_address`), so only its members can join.

A lost follower ends the group: `on_lost` is called once (the runtime fails the open requests
and answers 503), and every later step raises `GroupLost` before any collective could hang.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from mlx_manager.distributed import channel
from mlx_manager.distributed.channel import ChannelClosed, Message
from mlx_manager.distributed.group import ChannelAddress, new_token, share_address
from mlx_manager.distributed.step_codec import encode_step
from mlx_manager.engine.commands import LoadModel
from mlx_manager.errors import GroupLost
from mlx_manager.models.loaded import LoadedModel, load_text_model
from mlx_manager.models.sources import ModelSpec
from mlx_manager.runner.step_plan import SchedulerOutput

log = logging.getLogger(__name__)

_EXPLAIN_WAIT_S = 2.0  # how long a failed step waits to learn whether a rank is gone


class GroupLeader:
    """Implements `engine.sharding.ShardGroup` and its `StepMirror` for the one model."""

    def __init__(self, group: Any, model_id: str, timeout_s: float) -> None:
        self._group = group
        self.model_id = model_id
        self._timeout_s = timeout_s
        self._followers: dict[int, socket.socket] = {}
        self._replies: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._send_lock = threading.Lock()
        self._lost: str | None = None
        self._lost_event = threading.Event()
        self._closing = False
        self._on_lost: Callable[[str], None] = lambda reason: None
        self._rank_bytes: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return int(self._group.size())

    @property
    def lost(self) -> str | None:
        """Why the group ended, or None while it runs."""
        return self._lost

    def connect(self, host: str, port: int) -> None:
        """Open the channel, share its address through the group, and wait for every other
        rank to join (a collective: every rank calls `share_address` at once)."""
        token = new_token()
        with socket.create_server((host, port)) as server:
            address = ChannelAddress(host, server.getsockname()[1], token)
            share_address(self._group, address)
            server.settimeout(self._timeout_s)
            deadline = time.monotonic() + self._timeout_s
            while len(self._followers) < self.size - 1:
                server.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    sock, peer = server.accept()
                except TimeoutError as exc:
                    raise RuntimeError(
                        f"only {len(self._followers)} of {self.size - 1} ranks joined the "
                        f"step channel in {self._timeout_s:g}s"
                    ) from exc
                self._admit(sock, peer, token)
        log.info("distributed group of %d ranks joined; rank 0 leads", self.size)

    def _admit(self, sock: socket.socket, peer: Any, token: str) -> None:
        sock.settimeout(self._timeout_s)
        try:
            hello = channel.receive(sock)
        except (ChannelClosed, ValueError):
            sock.close()
            return
        rank = hello.get("rank")
        good = isinstance(hello.get("token"), str) and hmac.compare_digest(hello["token"], token)
        if not good or not isinstance(rank, int) or not 0 < rank < self.size:
            log.warning("refused a step-channel connection from %s", peer[0])
            sock.close()
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._followers[rank] = sock
        threading.Thread(
            target=self._read, args=(rank, sock), name=f"rank-{rank}-reader", daemon=True
        ).start()

    def watch(self, on_lost: Callable[[str], None]) -> None:
        """Call `on_lost(reason)` (from a reader thread) when the group ends."""
        self._on_lost = on_lost
        if self._lost is not None:
            on_lost(self._lost)

    def close(self) -> None:
        """A clean shutdown: the followers are told to exit (once)."""
        if self._closing:
            return
        self._closing = True
        for sock in list(self._followers.values()):
            with contextlib.suppress(ChannelClosed):
                channel.send(sock, {"op": "stop"})
            sock.close()

    # --- ShardGroup ---

    def shards(self, model_id: str) -> bool:
        return model_id == self.model_id

    def load(self, command: LoadModel) -> LoadedModel:
        self._broadcast(
            {
                "op": "load",
                "model_id": command.model_id,
                "path": str(command.path),
                "context_length": command.context_length,
                "cpu_float32_max_gb": command.cpu_float32_max_gb,
            }
        )
        spec = ModelSpec(command.model_id, str(command.path))
        return load_text_model(
            spec, command.path, command.context_length, command.cpu_float32_max_gb, self._group
        )

    def mirror(self, model_id: str) -> GroupLeader:
        return self

    def rank_bytes(self) -> tuple[int, ...]:
        return self._rank_bytes

    # --- StepMirror ---

    def open(self, num_blocks: int, block_size: int) -> None:
        """Every follower allocates its KV shard and answers with its bytes."""
        self._broadcast({"op": "open", "num_blocks": num_blocks, "block_size": block_size})
        sizes: dict[int, int] = {}
        deadline = time.monotonic() + self._timeout_s
        while len(sizes) < self.size - 1:
            try:
                reply = self._replies.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty as exc:
                raise GroupLost("a rank did not load its shard in time") from exc
            if reply.get("op") == "error":
                raise GroupLost(f"rank {reply.get('rank')} failed: {reply.get('message')}")
            if reply.get("op") == "ready":
                sizes[int(reply["rank"])] = int(reply["weight_bytes"]) + int(reply["kv_bytes"])
        self._rank_bytes = tuple(sizes[rank] for rank in sorted(sizes))

    def step(self, output: SchedulerOutput[Any]) -> None:
        self._broadcast(encode_step(output))

    def end(self, request_id: str, reason: str) -> None:
        with contextlib.suppress(GroupLost):
            self._broadcast({"op": "end", "id": request_id, "reason": reason})

    def explain(self, exc: Exception) -> Exception:
        """A collective fails when a peer is gone (the ring backend raises); the channel's
        reader sees the same loss within moments: report the loss, naming the rank."""
        if isinstance(exc, GroupLost) or not self._lost_event.wait(_EXPLAIN_WAIT_S):
            return exc
        return GroupLost(self._lost or "the distributed group ended")

    # --- internals ---

    def _broadcast(self, message: Message) -> None:
        if self._lost is not None:
            raise GroupLost(self._lost)
        data = channel.encode(message)
        with self._send_lock:
            for rank, sock in self._followers.items():
                try:
                    sock.sendall(data)
                except OSError as exc:
                    self._lose(f"rank {rank} is gone ({exc})")
                    raise GroupLost(self._lost or "the group ended") from exc

    def _read(self, rank: int, sock: socket.socket) -> None:
        """Replies from one follower; the end of its connection ends the group."""
        while True:
            try:
                self._replies.put(channel.receive(sock))
            except (ChannelClosed, ValueError) as exc:
                if not self._closing:
                    self._lose(f"rank {rank} left the group ({exc})")
                return

    def _lose(self, reason: str) -> None:
        if self._lost is not None or self._closing:
            return
        self._lost = f"the distributed group ended: {reason}"
        self._lost_event.set()
        log.error("%s; restart the whole group to serve again", self._lost)
        self._on_lost(self._lost)

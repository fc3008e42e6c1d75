"""A follower rank: no HTTP server, a loop that receives rank 0's steps and runs them.

It loads its shard when told (`load`), allocates its shard of the KV pool (`open`, answered
with its bytes), then runs every step's forward passes on its shard (`step`) and drops the
sequences that ended (`end`, logged with what it still holds). It sends nothing back per
step: rank 0's sampled tokens are the ones that count and arrive as the next step's inputs.
It exits when rank 0 says `stop` (0) or when the channel or the group breaks (1): rank 0 is
gone, and a group is only ever restarted whole.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from pathlib import Path
from typing import Any

from mlx_manager.distributed import channel
from mlx_manager.distributed.channel import ChannelClosed, Message
from mlx_manager.distributed.group import ChannelAddress, share_address
from mlx_manager.distributed.step_codec import StepDecoder
from mlx_manager.engine.command_handler import parameter_bytes
from mlx_manager.kv.paged_storage import KVLayout, PagedKVStorage, probe_kv_layout
from mlx_manager.models.loaded import LoadedModel, load_text_model
from mlx_manager.models.sources import ModelSpec
from mlx_manager.runner.batch_runner import BatchRunner

log = logging.getLogger(__name__)


class Follower:
    def __init__(self, group: Any, sock: socket.socket) -> None:
        self._group = group
        self._sock = sock
        self.rank = int(group.rank())
        self._model: LoadedModel | None = None
        self._layout: KVLayout | None = None
        self._runner: BatchRunner | None = None
        self._decoder = StepDecoder()
        self.steps = 0

    @classmethod
    def join(cls, group: Any, timeout_s: float) -> Follower:
        """Learn rank 0's channel through the group (a collective) and join it."""
        address: ChannelAddress = share_address(group, None)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                sock = socket.create_connection((address.host, address.port), timeout=timeout_s)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        channel.send(sock, {"op": "hello", "rank": int(group.rank()), "token": address.token})
        log.info("rank %d joined rank 0's step channel", int(group.rank()))
        return cls(group, sock)

    def run(self) -> int:
        """Serve steps until rank 0 stops the group (0) or it breaks (1)."""
        while True:
            try:
                message = channel.receive(self._sock)
            except ChannelClosed as exc:
                log.error("rank %d: rank 0 is gone (%s); exiting", self.rank, exc)
                return 1
            op = message.get("op")
            if op == "stop":
                log.info("rank %d: the group stops", self.rank)
                return 0
            try:
                self._handle(op, message)
            except Exception as exc:  # the group cannot go on: rank 0 sees the channel close
                log.exception("rank %d: %s failed", self.rank, op)
                self._reply({"op": "error", "rank": self.rank, "message": str(exc)[:500]})
                return 1

    def _handle(self, op: Any, message: Message) -> None:
        if op == "step":
            assert self._runner is not None, "a step before the KV pool was opened"
            self._runner.run_forwards(self._decoder.decode(message))
            self.steps += 1
        elif op == "end":
            self._decoder.end([message["id"]])
            log.info(
                "rank %d: request %s ended (%s); %d sequence(s), %d KV block(s) held",
                self.rank,
                message["id"],
                message["reason"],
                len(self._decoder.sequences),
                self._decoder.blocks_held(),
            )
        elif op == "load":
            self._load(message)
        elif op == "open":
            self._open(int(message["num_blocks"]), int(message["block_size"]))
        else:
            raise ValueError(f"unknown step-channel message {op!r}")

    def _load(self, message: Message) -> None:
        path = Path(message["path"])
        spec = ModelSpec(message["model_id"], str(path))
        started = time.perf_counter()
        self._model = load_text_model(
            spec, path, message["context_length"], message["cpu_float32_max_gb"], self._group
        )
        # Rank 0 probes the KV layout with one forward: its all-reduces need ours.
        self._layout = probe_kv_layout(self._model.model)
        log.info(
            "rank %d: loaded its shard of %s in %.2fs",
            self.rank,
            spec.model_id,
            time.perf_counter() - started,
        )

    def _open(self, num_blocks: int, block_size: int) -> None:
        assert self._model is not None and self._layout is not None, "open before load"
        storage = PagedKVStorage(self._layout, num_blocks, block_size)
        self._runner = BatchRunner(self._model.model, storage)
        self._reply(
            {
                "op": "ready",
                "rank": self.rank,
                "weight_bytes": parameter_bytes(self._model.model),
                "kv_bytes": storage.nbytes,
            }
        )
        log.info(
            "rank %d: KV shard of %d blocks (%.3f GB)",
            self.rank,
            num_blocks - 1,  # as rank 0 counts them: block 0 pads the tables
            storage.nbytes / 1e9,
        )

    def _reply(self, message: Message) -> None:
        with contextlib.suppress(ChannelClosed):
            channel.send(self._sock, message)

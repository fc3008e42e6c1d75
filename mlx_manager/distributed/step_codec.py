"""A scheduled step as a channel message, and back: what a follower needs to run its forward.

A chunk travels with its input token ids (known values: rank 0 finishes each step before it
sends the next, so no input is still on the device), its block table and whether it samples;
the follower keeps each sequence's tokens and table (`MirrorSequence`) and runs the same
forward passes in the same order, so their all-reduces pair with rank 0's. Pure data: no MLX.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mlx_manager.distributed.channel import Message
from mlx_manager.runner.step_plan import ScheduledChunk, SchedulerOutput, StepSequence


def encode_step(output: SchedulerOutput[StepSequence]) -> Message:
    chunks = []
    for chunk in output.chunks:
        end = chunk.start + chunk.num_tokens
        inputs = chunk.seq.all_ids[chunk.start : end]
        if len(inputs) != chunk.num_tokens:
            raise ValueError(f"{chunk.seq.request_id}: an input of the step is not known yet")
        chunks.append(
            [
                chunk.seq.request_id,
                chunk.start,
                chunk.num_tokens,
                inputs,
                list(chunk.block_ids),
                chunk.samples,
            ]
        )
    return {
        "op": "step",
        "copies": [list(pair) for pair in output.copies],
        "chunks": chunks,
        "preempted": [seq.request_id for seq in output.preempted],
    }


@dataclass(slots=True, eq=False)
class MirrorSequence:
    """A follower's copy of one sequence: the token ids and block table rank 0 sent (ids
    before a prefix-cache hit are not sent; the runner never reads them)."""

    request_id: str
    token_ids: list[int] = field(default_factory=list)
    block_ids: tuple[int, ...] = ()

    @property
    def all_ids(self) -> list[int]:
        return self.token_ids


class StepDecoder:
    """Turns step messages into the runner's plan, keeping each live sequence's mirror."""

    def __init__(self) -> None:
        self.sequences: dict[str, MirrorSequence] = {}

    def decode(self, message: Message) -> SchedulerOutput[MirrorSequence]:
        for request_id in message["preempted"]:  # it recomputes from scratch, with new blocks
            seq = self.sequences.get(request_id)
            if seq is not None:
                seq.block_ids = ()
        chunks = []
        for request_id, start, num_tokens, inputs, block_ids, samples in message["chunks"]:
            seq = self.sequences.get(request_id)
            if seq is None:
                seq = self.sequences[request_id] = MirrorSequence(request_id)
            tokens = seq.token_ids
            del tokens[start:]
            # A prefix-cache hit starts past the tokens sent: their K/V are in the adopted
            # blocks, and the runner reads only this step's inputs, so zeros stand in.
            tokens.extend([0] * (start - len(tokens)))
            tokens.extend(inputs)
            seq.block_ids = tuple(block_ids)
            chunks.append(ScheduledChunk(seq, start, num_tokens, seq.block_ids, bool(samples)))
        copies = tuple((int(src), int(dst)) for src, dst in message["copies"])
        preempted = tuple(s for r in message["preempted"] if (s := self.sequences.get(r)))
        return SchedulerOutput(tuple(chunks), copies, preempted)

    def end(self, request_ids: Iterable[str]) -> None:
        for request_id in request_ids:
            self.sequences.pop(request_id, None)

    def blocks_held(self) -> int:
        """Blocks in the live sequences' tables (shared prefix blocks counted once)."""
        return len({block for seq in self.sequences.values() for block in seq.block_ids})

"""What the batch runner executes in one step: the scheduled chunks, the block copies to do first.

Plain data, built by the engine's scheduler (`engine.scheduler`) and read by the runner. It lives
here, below the engine, so that runner/ never imports from engine/ (imports point one way); the
chunk's sequence is typed by `StepSequence`, what the runner reads of it, and the scheduler's own
`Sequence` fits it (the types are generic over it, so the engine keeps its full type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class StepSequence(Protocol):
    """What the runner reads from a scheduled sequence."""

    @property
    def request_id(self) -> str: ...
    @property
    def all_ids(self) -> list[int]: ...  # the token ids whose values are known; read only


S = TypeVar("S", bound=StepSequence, covariant=True)


@dataclass(frozen=True, slots=True)
class ScheduledChunk(Generic[S]):
    seq: S
    start: int  # the sequence's computed tokens when scheduled: the first position to compute
    num_tokens: int  # positions to compute this step: start .. start + num_tokens - 1
    block_ids: tuple[int, ...]  # the sequence's full block table after allocation
    samples: bool  # the chunk reaches the sequence's end: sample its next token
    # The last input token (a decode's only one) is the previous step's sampled token, still on
    # the device when scheduled: the runner takes it from that step's token array. Otherwise
    # every input is known: seq.all_ids[start:start + num_tokens].
    input_inflight: bool = False


@dataclass(frozen=True, slots=True)
class SchedulerOutput(Generic[S]):
    chunks: tuple[ScheduledChunk[S], ...]  # one-token chunks (decodes) first, then prefills
    copies: tuple[tuple[int, int], ...]  # (src, dst) block copies to do, in order, before forward
    preempted: tuple[S, ...]  # sequences sent back to waiting this step

    @property
    def is_empty(self) -> bool:
        return not self.chunks

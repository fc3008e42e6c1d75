"""One sequence's scheduling state: tokens, progress through the KV cache, priority, status.

The scheduler and the KV manager read and advance it; the engine keeps its own per-request data
in `payload`. Token ids live in one growing list (`token_ids`) so that `all_ids` costs nothing
per step; `output_ids` is kept alongside for the engine's convenience. Grow both only through
`append_token`.

Both lists hold known values only. A step samples a token on the device, and the next step may
be launched before its value reaches the host (the pipelined engine): such a token is counted in
`num_inflight_tokens` (vLLM v1's output placeholders), never stored as a stand-in value. The
scheduler adds one when it schedules a step that samples; `Scheduler.update` appends the value
and takes it off. The sequence's length is `num_tokens + num_inflight_tokens`.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(slots=True, eq=False)
class Sequence:
    request_id: str
    prompt_ids: list[int]
    max_tokens: int
    priority: int = 0  # lower runs first (vLLM's convention)
    arrival: float = field(default_factory=time.monotonic)
    output_ids: list[int] = field(default_factory=list)
    # Positions whose K/V are in the cache or written by a scheduled (launched) step; may count
    # the position of an in-flight token, fed to the model straight from the device.
    num_computed_tokens: int = 0
    num_inflight_tokens: int = 0  # sampled by a scheduled step, value not on the host yet
    num_cached_tokens: int = 0  # prompt tokens served by the prefix cache at first admission
    scheduled_at: float | None = None  # the scheduler's clock at its first admission
    num_preemptions: int = 0
    status: SequenceStatus = SequenceStatus.WAITING
    payload: Any = None  # engine-side data; the scheduler never reads it
    token_ids: list[int] = field(init=False, repr=False)  # prompt_ids + output_ids

    def __post_init__(self) -> None:
        self.token_ids = [*self.prompt_ids, *self.output_ids]

    @property
    def all_ids(self) -> list[int]:
        """Prompt then output ids, known values only. The live list: read it, never mutate it."""
        return self.token_ids

    @property
    def num_tokens(self) -> int:
        """Tokens whose values are known (in-flight ones not counted)."""
        return len(self.token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_ids)

    @property
    def num_uncomputed_tokens(self) -> int:
        """Positions still to compute, an in-flight token's included."""
        return len(self.token_ids) + self.num_inflight_tokens - self.num_computed_tokens

    def append_token(self, token_id: int) -> None:
        self.output_ids.append(token_id)
        self.token_ids.append(token_id)

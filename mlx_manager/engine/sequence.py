"""One sequence's scheduling state: tokens, progress through the KV cache, priority, status.

The scheduler and the KV manager read and advance it; the engine keeps its own per-request data
in `payload`. Token ids live in one growing list (`token_ids`) so that `all_ids` costs nothing
per step; `output_ids` is kept alongside for the engine's convenience. Grow both only through
`append_token`.
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
    num_computed_tokens: int = 0  # tokens whose K/V are in the cache
    num_cached_tokens: int = 0  # prompt tokens served by the prefix cache at first admission
    num_preemptions: int = 0
    status: SequenceStatus = SequenceStatus.WAITING
    payload: Any = None  # engine-side data; the scheduler never reads it
    token_ids: list[int] = field(init=False, repr=False)  # prompt_ids + output_ids

    def __post_init__(self) -> None:
        self.token_ids = [*self.prompt_ids, *self.output_ids]

    @property
    def all_ids(self) -> list[int]:
        """Prompt then output ids. The live list: read it, never mutate it."""
        return self.token_ids

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_ids)

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    def append_token(self, token_id: int) -> None:
        self.output_ids.append(token_id)
        self.token_ids.append(token_id)

    def set_output_token(self, output_index: int, token_id: int) -> None:
        """Fill in a token appended as a placeholder before its value was known."""
        self.output_ids[output_index] = token_id
        self.token_ids[len(self.prompt_ids) + output_index] = token_id

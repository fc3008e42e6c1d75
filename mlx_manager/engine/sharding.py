"""What the engine needs from a distributed group that shards one of its models.

The engine stays unaware of the transport: the group (rank 0's `distributed.leader`) loads the
sharded model on every rank, and its mirror sees each step before the forward, so that the
other ranks run the same forward on their shards.
"""

from __future__ import annotations

from typing import Any, Protocol

from mlx_manager.engine.commands import LoadModel
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.runner.step_plan import SchedulerOutput


class StepMirror(Protocol):
    def open(self, num_blocks: int, block_size: int) -> None:
        """Every rank allocates its shard of the KV pool with this geometry."""

    def step(self, output: SchedulerOutput[Any]) -> None:
        """Send a step to the other ranks; called before the forward, inputs all known."""

    def end(self, request_id: str, reason: str) -> None:
        """A sequence ended (stop, length, abort, error): the other ranks drop it too.
        Never raises (a lost group has nothing to drop)."""

    def explain(self, exc: Exception) -> Exception:
        """The error to report for a failed step: the group's loss when a rank is gone."""


class ShardGroup(Protocol):
    @property
    def size(self) -> int: ...

    def shards(self, model_id: str) -> bool:
        """Whether `model_id` is the model sharded over the group."""

    def load(self, command: LoadModel) -> LoadedModel:
        """Load the model's shard here while every other rank loads its own."""

    def mirror(self, model_id: str) -> StepMirror: ...

    def rank_bytes(self) -> tuple[int, ...]:
        """Bytes each other rank holds for the model (weights + KV pool), once opened."""

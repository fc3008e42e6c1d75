"""Typed messages to the engine thread, each with the type of its reply.

The asyncio side sends a command (`EngineThread.execute`) and awaits its reply; the engine
thread runs it between steps (`CommandHandler`). Commands and replies are plain data (no
callables, no MLX arrays), so moving the engine core into its own process changes only the
transport (vLLM's EngineCore client is the example).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from mlx_manager.models.card import ModelCard
from mlx_manager.models.detection import ModelType
from mlx_manager.models.sources import ModelSpec
from mlx_manager.models.speech_model import Transcript, TranscriptionOptions
from mlx_manager.models.vision_model import VisionInputs

R = TypeVar("R")


class Command(Generic[R]):
    """Base of every engine command; `R` is the type of its reply."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ModelCost:
    """A loaded model's real cost, read from MLX by the engine that loaded it."""

    weight_bytes: int  # the parameters' nbytes
    kv_bytes: int  # the KV pool preallocated for it (or its budget)
    measured_bytes: int  # MLX active-memory growth across the load (other frees lower it)
    seconds: float
    # A model sharded over a distributed group: the bytes each other rank holds for it
    # (its shard's weights + KV pool); the fields above are this rank's (rank 0's).
    rank_bytes: tuple[int, ...] = ()

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes


@dataclass(frozen=True, slots=True)
class LoadResult:
    card: ModelCard  # what the request side needs; the weights stay on the engine thread
    cost: ModelCost


@dataclass(frozen=True, slots=True)
class MlxMemory:
    active_bytes: int
    peak_bytes: int
    cache_bytes: int


@dataclass(frozen=True, slots=True)
class ResolveModels(Command[list[tuple[str, Path]]]):
    """Each spec's local directory (may download, or convert the embedded GGUF with MLX)."""

    specs: tuple[ModelSpec, ...]
    cache_dir: Path | None
    hub_timeout_s: float


@dataclass(frozen=True, slots=True)
class LoadModel(Command[LoadResult]):
    model_id: str
    path: Path
    model_type: ModelType
    context_length: int | None
    cpu_float32_max_gb: float
    kv_budget_bytes: int  # the KV budget booked for models without a preallocated pool


@dataclass(frozen=True, slots=True)
class UnloadModel(Command[bool]):
    """Reply: True once unloaded (or not loaded); False while it still has requests."""

    model_id: str


@dataclass(frozen=True, slots=True)
class ReadMemory(Command[MlxMemory]):
    """MLX's allocator counters."""


@dataclass(frozen=True, slots=True)
class EmbedBatch(Command[np.ndarray]):
    """One padded forward of an embeddings model: (len(sequences), dimensions) unit rows."""

    model_id: str
    sequences: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class Transcribe(Command[Transcript]):
    """16 kHz mono float32 samples to text (the language is checked against the model)."""

    model_id: str
    audio: np.ndarray
    options: TranscriptionOptions


@dataclass(frozen=True, slots=True)
class BuildVisionInputs(Command[VisionInputs]):
    """Tokenize a vision prompt (image tokens expanded) and preprocess its images (PIL)."""

    model_id: str
    prompt_text: str
    images: tuple[Any, ...]

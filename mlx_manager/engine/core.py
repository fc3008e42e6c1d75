"""The engine core: one engine per served model, stepped in turn on the engine thread.

Models whose layers all use mlx-lm's plain KVCache run on the paged, continuous-batching
engine; anything else (sliding-window, SSM or hybrid caches) runs on the single-sequence
engine, and vision models on the same engine with several sequences interleaved. The core
routes requests and aborts, emits events, and publishes a snapshot.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import mlx.core as mx

from mlx_manager.config import EngineConfig
from mlx_manager.engine.paged_engine import PagedModelEngine
from mlx_manager.engine.request import EngineRequest
from mlx_manager.engine.serial_engine import SerialModelEngine
from mlx_manager.engine.sharding import ShardGroup
from mlx_manager.engine.vision_runner import VisionRunner
from mlx_manager.errors import ApiError, ErrorInfo, InternalError, ModelNotSupported
from mlx_manager.kv.paged_storage import probe_kv_layout
from mlx_manager.models.detection import ModelType
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.types import FinishReason, GenerationEvent

log = logging.getLogger(__name__)

EventSink = Callable[[GenerationEvent], None]


class ModelEngine(Protocol):
    @property
    def running(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def generated_tokens(self) -> int: ...
    def has_work(self) -> bool: ...
    def add(self, request: EngineRequest) -> None: ...
    def abort(self, request_id: str) -> GenerationEvent | None: ...
    def step(self) -> list[GenerationEvent]: ...


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    running: int
    waiting: int
    finished_requests: int
    aborted_requests: int
    generated_tokens: int
    tokens_per_second: float
    kv_block_size: int
    kv_blocks_total: int
    kv_blocks_used: int
    kv_blocks_free: int
    kv_bytes_used: int
    prefix_hit_rate: float


class EngineCore:
    def __init__(
        self, config: EngineConfig, emit: EventSink, group: ShardGroup | None = None
    ) -> None:
        self._config = config
        self._emit = emit
        self.group = group  # shards one model over a distributed group (rank 0)
        self.models: dict[str, LoadedModel] = {}
        self._engines: dict[str, ModelEngine] = {}
        self._finished = 0
        self._aborted = 0
        self._generated = 0
        self._recent: deque[tuple[float, int]] = deque(maxlen=512)

    def add_model(self, model: LoadedModel) -> None:
        if model.model_type not in (ModelType.EMBEDDINGS, ModelType.SPEECH):  # else: by calls
            self._engines[model.model_id] = self._engine_for(model)
        self.models[model.model_id] = model

    def _engine_for(self, model: LoadedModel) -> ModelEngine:
        if model.model_type is ModelType.VISION:
            return self._vision_engine(model)
        sharded = self.group is not None and self.group.shards(model.model_id)
        # The probe is a forward: on a sharded model every rank runs it (its all-reduces).
        layout = probe_kv_layout(model.model) if self._config.paged or sharded else None
        if self.group is not None and sharded:
            if layout is None:
                raise ModelNotSupported(
                    f"the model '{model.model_id}' cannot be served sharded: only models "
                    "whose layers all use a plain KV cache run on the paged engine"
                )
            engine = PagedModelEngine(
                model, layout, self._config, self.group.mirror(model.model_id)
            )
            log.info(
                "model %s: sharded over %d ranks, %s",
                model.model_id,
                self.group.size,
                engine.describe(),
            )
            return engine
        if layout is None:
            log.info("model %s runs on the single-sequence engine", model.model_id)
            return SerialModelEngine(model, self._config.prefill_step_size)
        engine = PagedModelEngine(model, layout, self._config)
        log.info("model %s: paged KV cache, %s", model.model_id, engine.describe())
        return engine

    def _vision_engine(self, model: LoadedModel) -> SerialModelEngine:
        """Vision sequences interleaved token by token, each with mlx-vlm's own cache."""
        step_size = self._config.prefill_step_size

        def runner(request: EngineRequest) -> VisionRunner:
            return VisionRunner(model, request, step_size)

        log.info("model %s runs on the vision engine", model.model_id)
        return SerialModelEngine(
            model, step_size, max_active=self._config.max_vision_seqs, runner_factory=runner
        )

    def remove_model(self, model_id: str) -> LoadedModel | None:
        """Drop a model and its engine (KV storage included) and return freed memory to MLX.

        Refuses while the model has requests running or waiting: returns the model then,
        None once removed (or when it was not here). A pipelined step whose sequences have
        all ended is finished first; its surplus tokens are dropped.
        """
        engine = self._engines.get(model_id)
        if engine is None:
            if self.models.pop(model_id, None) is not None:
                mx.clear_cache()
            return None
        sharded = self.group is not None and self.group.shards(model_id)
        if engine.running or engine.waiting or sharded:  # a group's model lives with the group
            return self.models[model_id]
        for _ in range(8):
            if not engine.has_work():
                break
            for event in engine.step():
                self._emit(event)
        # Models hold no reference cycles: dropping the references frees the arrays now
        # (measured; a gc.collect() here cost 60-250 ms per unload on a busy CPU).
        del self._engines[model_id], self.models[model_id], engine
        mx.clear_cache()
        return None

    def kv_bytes(self, model_id: str) -> int | None:
        """Bytes of the model's preallocated KV pool; None for the single-sequence engine."""
        engine = self._engines.get(model_id)
        return engine.storage.nbytes if isinstance(engine, PagedModelEngine) else None

    def has_work(self) -> bool:
        return any(engine.has_work() for engine in self._engines.values())

    @property
    def waiting(self) -> int:
        """Requests queued for a running batch, across models (cheap: queue lengths)."""
        return sum(e.waiting for e in self._engines.values())

    def add_request(self, request: EngineRequest) -> None:
        engine = self._engines.get(request.model_id)
        if engine is None:
            self._fail(request.request_id, InternalError("the model is not loaded"))
            return
        try:
            engine.add(request)
        except ApiError as exc:
            self._fail(request.request_id, exc)

    def abort(self, request_id: str) -> None:
        for engine in self._engines.values():
            event = engine.abort(request_id)
            if event is not None:
                self._aborted += 1
                self._emit(event)
                return

    def step(self) -> None:
        for engine in self._engines.values():
            if engine.has_work():
                before = engine.generated_tokens
                events = engine.step()
                self._count_tokens(engine.generated_tokens - before)
                for event in events:
                    if event.finished and event.finish_reason is not FinishReason.ABORT:
                        self._finished += 1
                    self._emit(event)

    def snapshot(self) -> EngineSnapshot:
        paged = [e for e in self._engines.values() if isinstance(e, PagedModelEngine)]
        return EngineSnapshot(
            running=sum(e.running for e in self._engines.values()),
            waiting=sum(e.waiting for e in self._engines.values()),
            finished_requests=self._finished,
            aborted_requests=self._aborted,
            generated_tokens=self._generated,
            tokens_per_second=self._recent_rate(),
            kv_block_size=self._config.block_size,
            kv_blocks_total=sum(e.kv.num_blocks - 1 for e in paged),
            kv_blocks_used=sum(e.blocks_used for e in paged),
            kv_blocks_free=sum(e.kv.num_free_blocks() for e in paged),
            kv_bytes_used=sum(e.blocks_used * e.storage.block_bytes for e in paged),
            prefix_hit_rate=_mean([e.kv.prefix_hit_rate() for e in paged]),
        )

    def _count_tokens(self, count: int) -> None:
        if count:
            self._generated += count
            self._recent.append((time.monotonic(), count))

    def _fail(self, request_id: str, error: Exception) -> None:
        self._emit(
            GenerationEvent(request_id, finish_reason=FinishReason.ERROR, error=ErrorInfo.of(error))
        )

    def _recent_rate(self, window_s: float = 10.0) -> float:
        now = time.monotonic()
        recent = [(t, n) for t, n in self._recent if now - t <= window_s]
        if not recent:
            return 0.0
        return sum(n for _, n in recent) / max(now - recent[0][0], 1e-3)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0

"""The engine core: owns the models and requests, advances generation one token per step.

This first core runs one sequence at a time in arrival order (FIFO) with mlx-lm's
`generate_step`; new requests and aborts are taken between tokens. The continuous-batching
core replaces it behind the same methods (add_request, abort, step, snapshot).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mlx_manager.config import EngineConfig
from mlx_manager.engine.output import OutputBuilder
from mlx_manager.engine.request import EngineRequest
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.runner.generation import SequenceRunner
from mlx_manager.types import FinishReason, GenerationEvent

log = logging.getLogger(__name__)

EventSink = Callable[[GenerationEvent], None]


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    running: int
    waiting: int
    finished_requests: int
    aborted_requests: int
    generated_tokens: int
    tokens_per_second: float


@dataclass(slots=True)
class _Active:
    request: EngineRequest
    runner: SequenceRunner
    output: OutputBuilder


class EngineCore:
    def __init__(self, config: EngineConfig, emit: EventSink) -> None:
        self._config = config
        self._emit = emit
        self.models: dict[str, LoadedModel] = {}
        self._waiting: deque[EngineRequest] = deque()
        self._active: _Active | None = None
        self._finished = 0
        self._aborted = 0
        self._generated = 0
        self._recent: deque[tuple[float, int]] = deque(maxlen=256)

    def has_work(self) -> bool:
        return self._active is not None or bool(self._waiting)

    def add_request(self, request: EngineRequest) -> None:
        self._waiting.append(request)

    def abort(self, request_id: str) -> None:
        if self._active is not None and self._active.request.request_id == request_id:
            self._end_active(self._active.output.finish(FinishReason.ABORT))
            self._aborted += 1
            return
        for request in self._waiting:
            if request.request_id == request_id:
                self._waiting.remove(request)
                self._aborted += 1
                self._emit(GenerationEvent(request_id, finish_reason=FinishReason.ABORT))
                return

    def step(self) -> None:
        """Advance the active request by one token, starting the next one if idle."""
        if self._active is None and not self._start_next():
            return
        assert self._active is not None
        active = self._active
        try:
            step = active.runner.next()
        except Exception as exc:  # a failing forward pass ends this request, not the engine
            log.exception("generation failed for %s", active.request.request_id)
            failed = active.output.finish(FinishReason.ERROR)
            self._end_active(
                GenerationEvent(
                    failed.request_id,
                    finish_reason=FinishReason.ERROR,
                    usage=failed.usage,
                    error=exc,
                )
            )
            return
        if step is None:
            self._end_active(active.output.finish(FinishReason.LENGTH))
            return
        self._generated += 1
        self._recent.append((time.monotonic(), 1))
        produced = active.output.add(step)
        if produced is None:
            return
        if produced.finished:
            self._end_active(produced)
        else:
            self._emit(produced)

    def snapshot(self) -> EngineSnapshot:
        return EngineSnapshot(
            running=int(self._active is not None),
            waiting=len(self._waiting),
            finished_requests=self._finished,
            aborted_requests=self._aborted,
            generated_tokens=self._generated,
            tokens_per_second=self._recent_rate(),
        )

    def _start_next(self) -> bool:
        while self._waiting:
            request = self._waiting.popleft()
            model = self.models.get(request.model_id)
            if model is None:
                self._emit(
                    GenerationEvent(
                        request.request_id,
                        finish_reason=FinishReason.ERROR,
                        error=RuntimeError("model was unloaded"),
                    )
                )
                continue
            runner = SequenceRunner(
                model.model,
                list(request.prompt_ids),
                request.sampling,
                request.max_tokens,
                self._config.prefill_step_size,
            )
            output = OutputBuilder(request, model.tokenizer, model.stop_token_ids)
            self._active = _Active(request, runner, output)
            return True
        return False

    def _end_active(self, event: GenerationEvent) -> None:
        if self._active is not None:
            self._active.runner.close()
        self._active = None
        if event.finish_reason is not FinishReason.ABORT:
            self._finished += 1
        self._emit(event)

    def _recent_rate(self, window_s: float = 10.0) -> float:
        now = time.monotonic()
        tokens = sum(n for t, n in self._recent if now - t <= window_s)
        if not tokens:
            return 0.0
        oldest = min(t for t, _ in self._recent if now - t <= window_s)
        return tokens / max(now - oldest, 1e-3)

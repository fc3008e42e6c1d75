"""Sequence-at-a-time engine for models the paged engine cannot run.

Text models with non-KVCache layers run here one sequence at a time (mlx-lm's
`generate_step` and its own caches); vision models run here too, several sequences
interleaved token by token (mlx-vlm's `generate_step`). Each active sequence owns its cache;
new requests and aborts are taken between tokens, and the engine core steps the other
models' engines between this engine's steps, so text traffic is never blocked for longer
than one token (or one vision prefill).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mlx_manager.engine.output import OutputBuilder
from mlx_manager.engine.request import EngineRequest
from mlx_manager.errors import ErrorInfo
from mlx_manager.models.grammar_tokenizer import grammar_tokenizer_for
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.runner.generation import SequenceRunner, StepOutput
from mlx_manager.types import FinishReason, GenerationEvent

log = logging.getLogger(__name__)


class Runner(Protocol):
    def next(self) -> StepOutput | None: ...
    def close(self) -> None: ...


RunnerFactory = Callable[[EngineRequest], Runner]


@dataclass(slots=True)
class _Active:
    request: EngineRequest
    runner: Runner
    output: OutputBuilder


class SerialModelEngine:
    def __init__(
        self,
        model: LoadedModel,
        prefill_step_size: int,
        *,
        max_active: int = 1,
        runner_factory: RunnerFactory | None = None,
    ) -> None:
        self._model = model
        self._max_active = max_active
        self._make_runner = runner_factory or self._text_runner(prefill_step_size)
        self._waiting: deque[EngineRequest] = deque()
        self._active: list[_Active] = []
        self.generated_tokens = 0

    def _text_runner(self, prefill_step_size: int) -> RunnerFactory:
        def make(request: EngineRequest) -> Runner:
            return SequenceRunner(
                self._model.model,
                list(request.prompt_ids),
                request.sampling,
                request.max_tokens,
                prefill_step_size,
                grammar_tokenizer_for(self._model, request.sampling),
            )

        return make

    @property
    def running(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def has_work(self) -> bool:
        return bool(self._active) or bool(self._waiting)

    def add(self, request: EngineRequest) -> None:
        self._waiting.append(request)

    def abort(self, request_id: str) -> GenerationEvent | None:
        for active in self._active:
            if active.request.request_id == request_id:
                event = active.output.finish(FinishReason.ABORT)
                self._close(active)
                return event
        for request in self._waiting:
            if request.request_id == request_id:
                self._waiting.remove(request)
                return GenerationEvent(request_id, finish_reason=FinishReason.ABORT)
        return None

    def step(self) -> list[GenerationEvent]:
        """Advance every active sequence by one token, starting waiting ones while there is room."""
        while self._waiting and len(self._active) < self._max_active:
            self._start(self._waiting.popleft())
        events = []
        for active in list(self._active):
            event = self._advance(active)
            if event is not None:
                events.append(event)
        return events

    def _advance(self, active: _Active) -> GenerationEvent | None:
        try:
            step = active.runner.next()
        except Exception as exc:  # a failing forward pass ends this request, not the engine
            log.exception("generation failed for %s", active.request.request_id)
            failed = active.output.finish(FinishReason.ERROR)
            self._close(active)
            return GenerationEvent(
                failed.request_id,
                finish_reason=FinishReason.ERROR,
                usage=failed.usage,
                error=ErrorInfo.of(exc),
                timings=failed.timings,
            )
        if step is None:
            event = active.output.finish(FinishReason.LENGTH)
        else:
            self.generated_tokens += 1
            produced = active.output.add(step)
            if produced is None:
                return None
            event = produced
        if event.finished:
            self._close(active)
        return event

    def _start(self, request: EngineRequest) -> None:
        output = OutputBuilder(request, self._model.tokenizer, self._model.stop_token_ids)
        output.scheduled_at = time.monotonic()
        # Runners are lazy generators: building one does no model work that could fail here.
        self._active.append(_Active(request, self._make_runner(request), output))

    def _close(self, active: _Active) -> None:
        active.runner.close()
        self._active.remove(active)

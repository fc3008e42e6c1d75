"""Single-sequence engine for models the paged engine cannot run (non-KVCache layers).

Runs one sequence at a time in arrival order with mlx-lm's `generate_step` and mlx-lm's own
caches; new requests and aborts are taken between tokens.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from mlx_manager.engine.output import OutputBuilder
from mlx_manager.engine.request import EngineRequest
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.runner.generation import SequenceRunner
from mlx_manager.types import FinishReason, GenerationEvent

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Active:
    request: EngineRequest
    runner: SequenceRunner
    output: OutputBuilder


class SerialModelEngine:
    def __init__(self, model: LoadedModel, prefill_step_size: int) -> None:
        self._model = model
        self._prefill_step_size = prefill_step_size
        self._waiting: deque[EngineRequest] = deque()
        self._active: _Active | None = None
        self.generated_tokens = 0

    @property
    def running(self) -> int:
        return int(self._active is not None)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def has_work(self) -> bool:
        return self._active is not None or bool(self._waiting)

    def add(self, request: EngineRequest) -> None:
        self._waiting.append(request)

    def abort(self, request_id: str) -> GenerationEvent | None:
        if self._active is not None and self._active.request.request_id == request_id:
            event = self._active.output.finish(FinishReason.ABORT)
            self._close_active()
            return event
        for request in self._waiting:
            if request.request_id == request_id:
                self._waiting.remove(request)
                return GenerationEvent(request_id, finish_reason=FinishReason.ABORT)
        return None

    def step(self) -> list[GenerationEvent]:
        """Advance the active request by one token, starting the next one if idle."""
        if self._active is None and not self._start_next():
            return []
        assert self._active is not None
        active = self._active
        try:
            step = active.runner.next()
        except Exception as exc:  # a failing forward pass ends this request, not the engine
            log.exception("generation failed for %s", active.request.request_id)
            failed = active.output.finish(FinishReason.ERROR)
            self._close_active()
            return [
                GenerationEvent(
                    failed.request_id,
                    finish_reason=FinishReason.ERROR,
                    usage=failed.usage,
                    error=exc,
                )
            ]
        if step is None:
            event = active.output.finish(FinishReason.LENGTH)
        else:
            self.generated_tokens += 1
            produced = active.output.add(step)
            if produced is None:
                return []
            event = produced
        if event.finished:
            self._close_active()
        return [event]

    def _start_next(self) -> bool:
        if not self._waiting:
            return False
        request = self._waiting.popleft()
        runner = SequenceRunner(
            self._model.model,
            list(request.prompt_ids),
            request.sampling,
            request.max_tokens,
            self._prefill_step_size,
        )
        output = OutputBuilder(request, self._model.tokenizer, self._model.stop_token_ids)
        self._active = _Active(request, runner, output)
        return True

    def _close_active(self) -> None:
        if self._active is not None:
            self._active.runner.close()
        self._active = None

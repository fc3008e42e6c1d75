"""Continuous batching on a paged KV cache for one model.

Each step: the scheduler picks who runs and how many tokens (decodes, prefill chunks,
preemptions, copy-on-write) and books the step as launched, the batch runner does the forward
passes and sampling on the paged storage, `Scheduler.update` brings the sampled tokens, and
each request's output builder turns its new token into text events (stop tokens and strings,
logprobs, usage).

A model sharded over a distributed group has a `StepMirror`: each step goes to the other ranks
before its forward, with every input known, so such an engine finishes a step before it
launches the next (no pipelining: the followers never sample, rank 0's tokens are the ones
that count and travel as the next step's inputs).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from mlx_manager.config import EngineConfig
from mlx_manager.engine.output import OutputBuilder
from mlx_manager.engine.request import EngineRequest
from mlx_manager.engine.scheduler import Scheduler, SchedulerConfig
from mlx_manager.engine.sequence import Sequence, SequenceStatus
from mlx_manager.engine.sharding import StepMirror
from mlx_manager.errors import ErrorInfo, InvalidRequest
from mlx_manager.kv.manager import KVCacheManager
from mlx_manager.kv.paged_storage import KVLayout, PagedKVStorage
from mlx_manager.models.grammar_tokenizer import grammar_tokenizer_for
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.runner.batch_runner import BatchRunner, Launched
from mlx_manager.runner.request_sampler import RequestSampler
from mlx_manager.runner.step_plan import SchedulerOutput
from mlx_manager.types import FinishReason, GenerationEvent

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _InFlight:
    output: SchedulerOutput[Sequence]  # the step, booked by `schedule()`
    launched: Launched


@dataclass(slots=True)
class _RequestState:
    request: EngineRequest
    output: OutputBuilder


class PagedModelEngine:
    def __init__(
        self,
        model: LoadedModel,
        layout: KVLayout,
        config: EngineConfig,
        mirror: StepMirror | None = None,
    ) -> None:
        self._model = model
        self._mirror = mirror
        block_bytes = config.block_size * layout.bytes_per_token()
        # +1: block 0 is the null block that pads block tables.
        num_blocks = max(int(config.kv_cache_gb * 1e9) // block_bytes, 2) + 1
        self.kv = KVCacheManager(num_blocks, config.block_size, namespace=model.model_id)
        self.scheduler = Scheduler(
            SchedulerConfig(
                max_num_seqs=config.max_num_seqs,
                # every running sequence must be able to decode in each step
                max_num_batched_tokens=max(config.max_num_batched_tokens, config.max_num_seqs),
                max_prefill_chunk=config.prefill_step_size,
                aging_s=config.priority_aging_s,
            ),
            self.kv,
        )
        self.storage = PagedKVStorage(layout, num_blocks, config.block_size)
        self.runner = BatchRunner(model.model, self.storage)
        if mirror is not None:
            mirror.open(num_blocks, config.block_size)
        self._samplers: dict[str, RequestSampler] = {}
        self._inflight: _InFlight | None = None
        self.generated_tokens = 0

    def describe(self) -> str:
        return (
            f"{self.kv.num_blocks - 1} blocks x {self.storage.block_size} tokens "
            f"({self.storage.nbytes / 1e9:.2f} GB)"
        )

    @property
    def running(self) -> int:
        return len(self.scheduler.running)

    @property
    def waiting(self) -> int:
        return len(self.scheduler.waiting)

    @property
    def blocks_used(self) -> int:
        return self.kv.num_blocks - 1 - self.kv.num_free_blocks()

    def add(self, request: EngineRequest) -> None:
        seq = Sequence(
            request.request_id, list(request.prompt_ids), request.max_tokens, request.priority
        )
        try:
            self.scheduler.add(seq)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="messages") from exc
        # The scheduler may lower max_tokens so the sequence always fits the pool alone.
        request = dataclasses.replace(request, max_tokens=seq.max_tokens)
        output = OutputBuilder(request, self._model.tokenizer, self._model.stop_token_ids)
        seq.payload = _RequestState(request, output)
        self._samplers[request.request_id] = RequestSampler(
            request.sampling,
            len(self._model.tokenizer),
            grammar_tokenizer_for(self._model, request.sampling),
        )

    def abort(self, request_id: str) -> GenerationEvent | None:
        seq = self.scheduler.abort(request_id)
        if seq is None:
            return None
        self._samplers.pop(request_id, None)
        self._mirror_end(request_id, FinishReason.ABORT)
        output = self._state(seq).output
        output.scheduled_at = seq.scheduled_at
        return output.finish(FinishReason.ABORT)

    def has_work(self) -> bool:
        return self._inflight is not None or self.scheduler.has_work()

    def step(self) -> list[GenerationEvent]:
        """Schedule and launch step k, then finish step k-1 while the device runs step k.

        The host work of a step (scheduling, detokenizing, stop checks, events) overlaps the
        device's forward pass; a sequence that ended in step k-1 may have run once more in
        step k, and that surplus token is dropped. A step that only samples first tokens is
        finished before the next one is built: building it (several ms for a deep model)
        would delay those first tokens, and there is no running stream to keep fed.
        """
        if self._inflight is not None and _first_tokens_only(self._inflight.output):
            first = self._finish_step(self._inflight)
            self._inflight = None
            return first
        output = self.scheduler.schedule()
        events: list[GenerationEvent] = []
        if self._inflight is not None and (
            output.is_empty or self._mirror is not None or self._needs_history(output)
        ):
            events += self._finish_step(self._inflight)  # sample with every value known
            self._inflight = None
            running = tuple(c for c in output.chunks if c.seq.status is SequenceStatus.RUNNING)
            output = dataclasses.replace(output, chunks=running)
        if output.is_empty:
            return events
        try:
            if self._mirror is not None:
                self._mirror.step(output)
            launched = self.runner.launch(output, self._samplers)
        except Exception as exc:  # a failing forward pass fails this step's requests only
            log.exception("forward pass failed")
            return events + self._fail(output, exc)
        if self._inflight is not None:
            events += self._finish_step(self._inflight)
        self._inflight = _InFlight(output, launched)
        return events

    def _needs_history(self, output: SchedulerOutput[Sequence]) -> bool:
        """Logits processors (penalties, bias) read the sampled history's values."""
        samplers = self._samplers
        return any(
            (s := samplers.get(c.seq.request_id)) is not None and s.processors
            for c in output.chunks
        )

    def _finish_step(self, inflight: _InFlight) -> list[GenerationEvent]:
        try:
            results = self.runner.collect(inflight.launched, self._samplers)
        except Exception as exc:
            log.exception("forward pass failed")
            return self._fail(inflight.output, exc)
        self.generated_tokens += len(results)
        sampled = {request_id: result.token for request_id, result in results.items()}
        events: list[GenerationEvent] = []
        # Sequences that ended or were aborted meanwhile are not given their surplus token.
        for seq in self.scheduler.update(inflight.output, sampled):
            output = self._state(seq).output
            if not output.completion_tokens:  # its first token: what its admission recorded
                output.cached_tokens, output.scheduled_at = seq.num_cached_tokens, seq.scheduled_at
            event = output.add(results[seq.request_id])
            if event is None:
                continue
            if event.finished:
                self._end(seq, event.finish_reason or FinishReason.STOP)
            events.append(event)
        return events

    def _end(self, seq: Sequence, reason: FinishReason) -> None:
        if seq.status is SequenceStatus.RUNNING:
            self.scheduler.finish(seq)
        else:  # preempted back to waiting after it sampled its last token
            self.scheduler.abort(seq.request_id)
        self._samplers.pop(seq.request_id, None)
        self._mirror_end(seq.request_id, reason)

    def _fail(self, output: SchedulerOutput[Sequence], exc: Exception) -> list[GenerationEvent]:
        if self._mirror is not None:
            exc = self._mirror.explain(exc)
        return self._fail_sequences([chunk.seq for chunk in output.chunks], exc)

    def _fail_sequences(self, seqs: list[Sequence], exc: Exception) -> list[GenerationEvent]:
        events = []
        for failed in seqs:
            seq = self.scheduler.abort(failed.request_id)
            if seq is not None:
                self._samplers.pop(seq.request_id, None)
                self._mirror_end(seq.request_id, FinishReason.ERROR)
                output = self._state(seq).output
                output.scheduled_at = seq.scheduled_at
                ended = output.finish(FinishReason.ERROR)
                events.append(
                    GenerationEvent(
                        seq.request_id,
                        finish_reason=FinishReason.ERROR,
                        usage=ended.usage,
                        error=ErrorInfo.of(exc),
                        timings=ended.timings,
                    )
                )
        return events

    def _mirror_end(self, request_id: str, reason: FinishReason) -> None:
        if self._mirror is not None:
            self._mirror.end(request_id, reason.value)

    @staticmethod
    def _state(seq: Sequence) -> _RequestState:
        state: _RequestState = seq.payload
        return state


def _first_tokens_only(output: SchedulerOutput[Sequence]) -> bool:
    """Whether every token a step samples is its sequence's first output token."""
    sampled = False
    for chunk in output.chunks:
        if chunk.samples:
            if chunk.start + chunk.num_tokens != chunk.seq.num_prompt_tokens:
                return False
            sampled = True
    return sampled

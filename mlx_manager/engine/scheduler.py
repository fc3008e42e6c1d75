"""Continuous-batching scheduler: who runs this step, how many tokens each, who is preempted.

vLLM v1's scheme on a paged KV cache: every step has a token budget; running sequences go first
(decodes, one token each, before prefill chunks, so a long prompt never stalls a stream), then
waiting ones are admitted while budget, `max_num_seqs` and KV blocks allow. Long prompts are
prefilled in chunks. When blocks run out, the worst running sequence is preempted: its blocks
are freed and it is recomputed later (the prefix cache usually keeps most of its blocks).
mlx-lm's `BatchGenerator` has no paged cache, priorities or preemption, and vLLM's scheduler is
bound to its own engine, so we write ours; it is pure Python and never touches `mx`.

Priority: lower `priority` runs first. Effective priority is `priority - floor(age / aging_s)`,
age counted from arrival (preemption keeps it), for waiting and running sequences alike: a
request only gains standing as it ages, so a low-priority one is never starved, and two requests
never preempt each other back and forth. Ties go to the earlier arrival.

A sequence decoding alone is moved into one run of blocks when it is not in one
(`KVCacheManager.compact`): the runner then reads its K/V as slices instead of gathering them.

Step bookkeeping, one path (vLLM v1's): `schedule()` books the step as launched (computed tokens
advance; each sampling sequence gains an in-flight token, a count, never a stand-in value) and
`update(output, sampled)` is the only way sampled values arrive. The pipelined engine schedules
step k before it updates step k-1, so a decode's input may be the token still in flight: the
chunk says so (`input_inflight`) and the runner takes it from the device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mlx_manager.engine.sequence import Sequence, SequenceStatus
from mlx_manager.kv.manager import KVCacheManager
from mlx_manager.runner.step_plan import ScheduledChunk, SchedulerOutput


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192  # per-step token budget (decodes count 1 each)
    max_prefill_chunk: int = 2048  # a single sequence's prefill tokens per step
    aging_s: float = 5.0  # every aging_s of age improves effective priority by 1; 0: no aging

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1 or self.max_prefill_chunk < 1 or self.aging_s < 0:
            raise ValueError(f"invalid scheduler config: {self}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            # Otherwise running decodes could miss a step.
            raise ValueError("max_num_batched_tokens must be at least max_num_seqs")


def priority_key(seq: Sequence, now: float, aging_s: float) -> tuple[int, float]:
    """Sort key, best first: (effective priority, arrival)."""
    if aging_s <= 0:
        return seq.priority, seq.arrival
    return seq.priority - math.floor(max(0.0, now - seq.arrival) / aging_s), seq.arrival


@dataclass(slots=True)
class _Step:
    budget: int
    now: float
    scheduled: dict[Sequence, tuple[int, list[tuple[int, int]]]] = field(default_factory=dict)
    preempted: list[Sequence] = field(default_factory=list)
    victim_key: tuple[int, float] | None = None  # best key preempted for priority this step

    def take(self, seq: Sequence, num_tokens: int, copies: list[tuple[int, int]]) -> None:
        self.scheduled[seq] = (num_tokens, copies)
        self.budget -= num_tokens


class Scheduler:
    def __init__(
        self,
        config: SchedulerConfig,
        kv: KVCacheManager,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.kv = kv
        self._clock = clock
        self._waiting: dict[str, Sequence] = {}
        self._running: dict[str, Sequence] = {}

    @property
    def running(self) -> tuple[Sequence, ...]:
        return tuple(self._running.values())

    @property
    def waiting(self) -> tuple[Sequence, ...]:
        return tuple(self._waiting.values())

    def has_work(self) -> bool:
        return bool(self._running or self._waiting)

    def add(self, seq: Sequence) -> None:
        """Queue `seq`. Raises ValueError for a duplicate id, an empty prompt, or a prompt larger
        than the whole KV pool (it could never run). Clamps `seq.max_tokens` so the sequence
        always fits the pool alone: the engine's length check then ends it ("length")."""
        if seq.request_id in self._waiting or seq.request_id in self._running:
            raise ValueError(f"duplicate request id {seq.request_id!r}")
        capacity = self.kv.max_seq_tokens
        if not 0 < seq.num_tokens <= capacity:
            raise ValueError(
                f"prompt of {seq.num_tokens} tokens does not fit the KV cache "
                f"(1 to {capacity} tokens)"
            )
        seq.max_tokens = min(seq.max_tokens, capacity - seq.num_prompt_tokens + 1)
        seq.status = SequenceStatus.WAITING
        self._waiting[seq.request_id] = seq

    def abort(self, request_id: str) -> Sequence | None:
        seq = self._running.get(request_id) or self._waiting.get(request_id)
        if seq is not None:
            self.finish(seq)
        return seq

    def finish(self, seq: Sequence) -> None:
        """The engine is done with `seq` (stop, length, abort): free its blocks."""
        self._running.pop(seq.request_id, None)
        self._waiting.pop(seq.request_id, None)
        self.kv.free(seq)
        seq.status = SequenceStatus.FINISHED

    def schedule(self) -> SchedulerOutput[Sequence]:
        """Plan the next step and book it as launched (a scheduled step is always launched; the
        engine aborts the sequences of one that fails): see `_launch`."""
        step = _Step(budget=self.config.max_num_batched_tokens, now=self._clock())
        self._schedule_running(step)
        if not step.preempted:  # as vLLM: no admissions in a step short of blocks
            self._admit_waiting(step)
        self._compact_lone_decode(step)
        return self._launch(step)

    def _compact_lone_decode(self, step: _Step) -> None:
        """A sequence decoding alone is read as slices when its blocks are one run of ids:
        move its table into one (`KVCacheManager.compact`) when it is not. Only in a step
        with no other copies, so that no copy reads a block another one writes."""
        if len(step.scheduled) != 1 or len(self._running) != 1:
            return
        ((seq, (num_tokens, copies)),) = step.scheduled.items()
        if num_tokens != 1 or copies:
            return
        moved = self.kv.compact(seq)
        if moved:
            step.scheduled[seq] = (num_tokens, moved)

    def update(
        self, output: SchedulerOutput[Sequence], sampled: Mapping[str, int]
    ) -> list[Sequence]:
        """Record a step the runner has finished; steps are updated in the order scheduled.

        Each sampling sequence's token value (`sampled`, by request id) arrives: it is appended
        and the sequence's in-flight count drops by one. The blocks the step filled are
        registered in the prefix cache. Returns the sequences given a token: a sequence finished
        or aborted since the schedule gets none (a surplus token, dropped), a preempted one does.
        """
        received: list[Sequence] = []
        cache_full_blocks = self.kv.cache_full_blocks
        for chunk in output.chunks:
            seq = chunk.seq
            status = seq.status
            if status is SequenceStatus.FINISHED:
                continue
            if chunk.samples:
                seq.append_token(sampled[seq.request_id])
                seq.num_inflight_tokens -= 1
                received.append(seq)
            if status is SequenceStatus.RUNNING:
                cache_full_blocks(seq, chunk.start + chunk.num_tokens)
        return received

    def _key(self, seq: Sequence, now: float) -> tuple[int, float]:
        return priority_key(seq, now, self.config.aging_s)

    def _num_new_tokens(self, seq: Sequence, budget: int) -> int:
        return min(seq.num_uncomputed_tokens, self.config.max_prefill_chunk, budget)

    def _schedule_running(self, step: _Step) -> None:
        ordered = sorted(self._running.values(), key=lambda s: self._key(s, step.now))
        ordered.sort(key=lambda s: s.num_uncomputed_tokens != 1)  # stable: decodes first
        for seq in ordered:
            if step.budget <= 0:
                break
            if (
                seq.status is SequenceStatus.RUNNING
                and seq.num_uncomputed_tokens > 0
                # else done, awaiting its last token
                and seq.num_output_tokens + seq.num_inflight_tokens < seq.max_tokens
            ):
                self._allocate_running(seq, step)

    def _allocate_running(self, seq: Sequence, step: _Step) -> None:
        """Allocate for a running `seq`, preempting the worst running ones until it fits (or
        until it is itself the worst, and is preempted)."""
        while True:
            num_tokens = self._num_new_tokens(seq, step.budget)  # a victim may refund budget
            if (copies := self.kv.allocate(seq, num_tokens)) is not None:
                step.take(seq, num_tokens, copies)
                return
            victim = max(self._running.values(), key=lambda s: self._key(s, step.now))
            self._preempt(victim, step)
            if victim is seq:
                return

    def _admit_waiting(self, step: _Step) -> None:
        queue = sorted(self._waiting.values(), key=lambda s: self._key(s, step.now))
        for seq in queue:
            if step.budget <= 0 or len(self._running) >= self.config.max_num_seqs:
                return
            if step.victim_key is not None and self._key(seq, step.now) >= step.victim_key:
                return  # nobody worse than a sequence preempted for priority gets in now
            if seq.num_inflight_tokens:
                return  # preempted before its last token arrived: it resumes once it has
            if not self._try_admit(seq, step):
                return  # head of line: a later, lower-priority sequence must not jump ahead

    def _try_admit(self, seq: Sequence, step: _Step) -> bool:
        prefix, num_hit = self.kv.lookup_prefix(seq)
        seq.num_computed_tokens = num_hit
        while True:
            num_tokens = self._num_new_tokens(seq, step.budget)  # a victim may refund budget
            if (copies := self.kv.allocate(seq, num_tokens, prefix)) is not None:
                break
            victim = self._priority_victim(seq, step.now)
            if victim is None:
                seq.num_computed_tokens = 0
                return False
            self._preempt(victim, step)
            key = self._key(victim, step.now)
            step.victim_key = key if step.victim_key is None else min(step.victim_key, key)
        if seq.num_preemptions == 0:
            seq.num_cached_tokens = num_hit
            seq.scheduled_at = step.now
        del self._waiting[seq.request_id]
        self._running[seq.request_id] = seq
        seq.status = SequenceStatus.RUNNING
        step.take(seq, num_tokens, copies)
        return True

    def _priority_victim(self, seq: Sequence, now: float) -> Sequence | None:
        """The worst running sequence, if `seq`'s effective priority is strictly better."""
        if not self._running:
            return None
        worst = max(self._running.values(), key=lambda s: self._key(s, now))
        return worst if self._key(seq, now)[0] < self._key(worst, now)[0] else None

    def _preempt(self, seq: Sequence, step: _Step) -> None:
        """Send a running `seq` back to waiting; it will recompute from scratch. A token still
        in flight stays counted: its value arrives through `update` as usual."""
        del self._running[seq.request_id]
        if seq in step.scheduled:  # already given tokens this step: take them back
            step.budget += step.scheduled.pop(seq)[0]
        self.kv.free(seq)
        seq.num_computed_tokens = 0
        seq.num_preemptions += 1
        seq.status = SequenceStatus.WAITING
        self._waiting[seq.request_id] = seq
        step.preempted.append(seq)

    def _launch(self, step: _Step) -> SchedulerOutput[Sequence]:
        """The step's chunks, booked as launched: each sequence's computed tokens advance by
        its chunk, and a chunk that reaches the sequence's end (an in-flight token counted)
        samples, adding one in-flight token. A chunk whose last input is still in flight (the
        previous step's sample) is marked so: the runner feeds it from the device."""
        chunks = []
        for seq, (num_tokens, _) in step.scheduled.items():
            start = seq.num_computed_tokens
            end = start + num_tokens
            known = seq.num_tokens
            samples = end == known + seq.num_inflight_tokens
            block_ids = tuple(self.kv.block_ids(seq))
            chunks.append(ScheduledChunk(seq, start, num_tokens, block_ids, samples, end > known))
            seq.num_computed_tokens = end
            if samples:
                seq.num_inflight_tokens += 1
        chunks.sort(key=lambda c: c.num_tokens != 1)  # stable: decodes first
        copies = tuple(pair for _, pair_list in step.scheduled.values() for pair in pair_list)
        return SchedulerOutput(tuple(chunks), copies, tuple(step.preempted))

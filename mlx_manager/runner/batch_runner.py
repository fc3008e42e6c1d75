"""Runs one scheduled step on the paged KV cache: batched decode, prefill chunks, sampling.

All single-token chunks (decodes) share one forward pass; prefill chunks of similar length
share one (`group_prefills`), padded to the longest. A forward of one sequence is built like
mlx-lm's own decode step: no mask of ours, and K/V slices when its blocks are one run of ids
(`PagedKVStorage.sequence_meta`). Every sequence samples with its own RequestSampler; plain
greedy rows share one argmax, whose result is the step's token array as is.

Pipelining: a step may be launched before the previous one's sampled tokens reach the host. A
decode chunk whose input is such a token (`input_inflight`, set by the scheduler) is fed from
the last launched step's token array, on the device.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from mlx_manager.kv.paged_storage import PagedKVStorage
from mlx_manager.runner.generation import StepOutput
from mlx_manager.runner.last_logits import last_position_logits, plain_head
from mlx_manager.runner.request_sampler import RequestSampler
from mlx_manager.runner.step_plan import ScheduledChunk, SchedulerOutput, StepSequence

Chunk = ScheduledChunk[StepSequence]


@dataclass(slots=True)
class _Pending:
    chunk: Chunk
    logprobs: mx.array | None


@dataclass(slots=True)
class Launched:
    """A step whose forward and sampling are queued on the device; `collect` waits for it."""

    pending: list[_Pending]
    tokens: mx.array | None  # [len(pending)] sampled ids, lazy


# A prefill chunk joins a batched forward when it is at least this fraction of the longest
# chunk there (bounding the padding), and a forward holds at most this many (padded) tokens.
_MIN_FILL = 0.75
_MAX_FORWARD_TOKENS = 8192


def group_prefills(chunks: Seq[Chunk]) -> list[list[Chunk]]:
    """Batch prefill chunks of similar length into shared forward passes."""
    groups: list[list[Chunk]] = []
    for chunk in sorted(chunks, key=lambda c: -c.num_tokens):
        group = groups[-1] if groups else None
        if (
            group is not None
            and chunk.num_tokens >= _MIN_FILL * group[0].num_tokens
            and (len(group) + 1) * group[0].num_tokens <= _MAX_FORWARD_TOKENS
        ):
            group.append(chunk)
        else:
            groups.append([chunk])
    return groups


def _forward_groups(chunks: Seq[Chunk]) -> list[list[Chunk]]:
    """The step's forward passes, in order: every decode in one, then the prefill groups."""
    decodes = [c for c in chunks if c.num_tokens == 1]
    forwards = [decodes] if decodes else []
    return forwards + group_prefills([c for c in chunks if c.num_tokens > 1])


class BatchRunner:
    def __init__(self, model: Any, storage: PagedKVStorage) -> None:
        self.model = model
        self.storage = storage
        self._head = plain_head(model)
        # The last launched step's sampled ids (lazy) and their rows, so the next step can
        # feed them to the model before their values reach the host.
        self._last_tokens: mx.array | None = None
        self._last_rows: dict[str, int] = {}

    def launch(
        self, output: SchedulerOutput[StepSequence], samplers: dict[str, RequestSampler]
    ) -> Launched:
        """Queue the step's forward passes and sampling on the device without waiting."""
        storage = self.storage
        storage.copy_blocks(output.copies)
        forwards = _forward_groups(output.chunks)
        pending: list[_Pending] = []
        parts: list[mx.array] = []
        for n, group in enumerate(forwards):
            logits = self._forward(group)
            if n < len(forwards) - 1:
                # Schedule this forward now: the next forward's pool writes then find no
                # pending reader of the pools and update them in place instead of copying.
                mx.async_eval(logits, storage.keys, storage.values)
            rows = [i for i, c in enumerate(group) if c.samples]
            if rows:  # a prefill chunk that does not reach the prompt's end samples nothing
                chosen = logits if len(rows) == len(group) else logits[mx.array(rows)]
                self._sample([group[i] for i in rows], chosen, samplers, pending, parts)
        tokens = (parts[0] if len(parts) == 1 else mx.concatenate(parts)) if parts else None
        extra = [p.logprobs for p in pending if p.logprobs is not None]
        mx.async_eval(
            *([tokens] if tokens is not None else []), *extra, storage.keys, storage.values
        )
        self._last_tokens = tokens
        self._last_rows = {p.chunk.seq.request_id: i for i, p in enumerate(pending)}
        return Launched(pending, tokens)

    def run_forwards(self, output: SchedulerOutput[StepSequence]) -> None:
        """A follower rank of a sharded model: the step's forward passes, in `launch`'s
        order (their all-reduces pair with rank 0's), waited for; no sampling (rank 0
        samples). The logits are evaluated too: the last layer's all-reduce feeds them."""
        storage = self.storage
        storage.copy_blocks(output.copies)
        for group in _forward_groups(output.chunks):
            logits = self._forward(group)
            mx.eval(logits, storage.keys, storage.values)

    def collect(
        self, launched: Launched, samplers: dict[str, RequestSampler]
    ) -> dict[str, StepOutput]:
        """Wait for a launched step and bring its sampled tokens to the host."""
        if launched.tokens is None:
            return {}
        token_ids: list[int] = launched.tokens.tolist()  # type: ignore[assignment]
        return {
            p.chunk.seq.request_id: self._result(p, token, samplers)
            for p, token in zip(launched.pending, token_ids, strict=True)
        }

    def _input_ids(self, chunks: Seq[Chunk], length: int) -> mx.array:
        """[B, L] input ids, right-padded with 0. A chunk whose input is still in flight takes
        it from the last launched step's token array."""
        inflight = [c.input_inflight for c in chunks]
        if not any(inflight):
            rows = [
                c.seq.all_ids[c.start : c.start + c.num_tokens] + [0] * (length - c.num_tokens)
                for c in chunks
            ]
            return mx.array(rows, dtype=mx.int32)
        last, last_rows = self._last_tokens, self._last_rows
        assert last is not None, "an in-flight token needs a launched step"
        assert length == 1, "only decode inputs can be in flight"
        if all(inflight):
            source = [last_rows[c.seq.request_id] for c in chunks]
            if source == list(range(last.shape[0])):  # the last step's rows, in order
                return last[:, None]
            return last[mx.array(source, dtype=mx.uint32)][:, None]
        pairs = list(zip(chunks, inflight, strict=True))
        source = [last_rows[c.seq.request_id] if f else 0 for c, f in pairs]
        known = mx.array([0 if f else c.seq.all_ids[c.start] for c, f in pairs], dtype=mx.int32)
        fetched = last[mx.array(source, dtype=mx.uint32)].astype(mx.int32)
        return mx.where(mx.array(inflight), fetched, known)[:, None]

    def _forward(self, chunks: Seq[Chunk]) -> mx.array:
        """Logits of each chunk's last position: [B, vocab] (lazy). Chunks of different
        lengths are right-padded; padded positions write to the null block, never read."""
        length = max(c.num_tokens for c in chunks)
        if len(chunks) == 1:
            chunk = chunks[0]
            meta = self.storage.sequence_meta(chunk.block_ids, chunk.start, chunk.num_tokens)
        else:
            meta = self.storage.batch_meta(
                [c.block_ids for c in chunks],
                [c.start for c in chunks],
                [c.num_tokens for c in chunks],
            )
        ragged = any(c.num_tokens != length for c in chunks)
        last = mx.array([c.num_tokens - 1 for c in chunks], dtype=mx.int32) if ragged else None
        inputs = self._input_ids(chunks, length)
        return last_position_logits(self.model, inputs, self.storage.views(meta), last, self._head)

    def _sample(
        self,
        chunks: Seq[Chunk],
        logits: mx.array,
        samplers: dict[str, RequestSampler],
        pending: list[_Pending],
        parts: list[mx.array],
    ) -> None:
        """Sample one token per row: append each row's `_Pending` to `pending` and its token
        ids, in the same order, to `parts` (one array for all plain greedy rows)."""
        rows = [samplers[c.seq.request_id] for c in chunks]
        fast = [i for i, s in enumerate(rows) if s.plain_greedy and not s.params.logprobs]
        if fast:
            chosen = logits[mx.array(fast)] if len(fast) < len(rows) else logits
            parts.append(mx.argmax(chosen, axis=-1))
            pending += [_Pending(chunks[i], None) for i in fast]
        if len(fast) == len(rows):
            return
        fast_set = set(fast)
        for i, sampler in enumerate(rows):
            if i in fast_set:
                continue
            row = sampler.process(chunks[i].seq.all_ids, logits[i : i + 1])
            logprobs = row - mx.logsumexp(row, axis=-1, keepdims=True)
            parts.append(sampler.sample(logprobs))
            pending.append(_Pending(chunks[i], logprobs[0] if sampler.params.logprobs else None))

    @staticmethod
    def _result(pending: _Pending, token: int, samplers: dict[str, RequestSampler]) -> StepOutput:
        if pending.logprobs is None:
            return StepOutput(token)
        params = samplers[pending.chunk.seq.request_id].params
        logprob: float = pending.logprobs[token].item()  # type: ignore[assignment]
        top: tuple[tuple[int, float], ...] = ()
        if params.top_logprobs > 0:
            k = params.top_logprobs
            ids = mx.argpartition(-pending.logprobs, kth=k - 1)[:k]
            id_list: list[int] = ids.tolist()  # type: ignore[assignment]
            values: list[float] = pending.logprobs[ids].tolist()  # type: ignore[assignment]
            top = tuple(sorted(zip(id_list, values, strict=True), key=lambda p: -p[1]))
        return StepOutput(token, logprob, top)

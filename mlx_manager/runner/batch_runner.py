"""Runs one scheduled step on the paged KV cache: batched decode, prefill chunks, sampling.

All single-token chunks (decodes) share one forward pass; each multi-token prefill chunk runs
as its own forward pass, so sequences of different lengths never need padded queries. Every
sequence samples with its own RequestSampler; plain greedy rows share one argmax.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from mlx_manager.engine.scheduler import ScheduledChunk, SchedulerOutput
from mlx_manager.kv.paged_storage import PagedKVStorage, StepMeta
from mlx_manager.runner.generation import StepOutput
from mlx_manager.runner.last_logits import last_position_logits
from mlx_manager.runner.request_sampler import RequestSampler

PENDING_TOKEN = -1  # a sampled token whose value is still on the device


@dataclass(slots=True)
class _Pending:
    chunk: ScheduledChunk
    token: mx.array
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


def group_prefills(chunks: Seq[ScheduledChunk]) -> list[list[ScheduledChunk]]:
    """Batch prefill chunks of similar length into shared forward passes."""
    groups: list[list[ScheduledChunk]] = []
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


class BatchRunner:
    def __init__(self, model: Any, storage: PagedKVStorage) -> None:
        self.model = model
        self.storage = storage
        # The last launched step's sampled ids (lazy) and their rows, so the next step can
        # feed them to the model before their values reach the host.
        self._last_tokens: mx.array | None = None
        self._last_rows: dict[str, int] = {}

    def run(
        self, output: SchedulerOutput, samplers: dict[str, RequestSampler]
    ) -> dict[str, StepOutput]:
        """Forward every chunk and wait: the sampled token of each chunk that samples."""
        return self.collect(self.launch(output, samplers), samplers)

    def launch(self, output: SchedulerOutput, samplers: dict[str, RequestSampler]) -> Launched:
        """Queue the step's forward passes and sampling on the device without waiting."""
        self.storage.copy_blocks(output.copies)
        decodes = [c for c in output.chunks if c.num_tokens == 1]
        prefills = [c for c in output.chunks if c.num_tokens > 1]
        pending: list[_Pending] = []
        if decodes:
            logits = self._forward(decodes)
            rows = [i for i, c in enumerate(decodes) if c.samples]
            if len(rows) < len(decodes):  # a 1-token prefill chunk that does not sample yet
                logits = logits[mx.array(rows)] if rows else logits[:0]
                decodes = [decodes[i] for i in rows]
            if decodes:
                pending += self._sample(decodes, logits, samplers)
        for group in group_prefills(prefills):
            logits = self._forward(group)
            rows = [i for i, c in enumerate(group) if c.samples]
            if rows:
                chosen = logits if len(rows) == len(group) else logits[mx.array(rows)]
                pending += self._sample([group[i] for i in rows], chosen, samplers)
        tokens = mx.stack([p.token for p in pending]) if pending else None
        extra = [p.logprobs for p in pending if p.logprobs is not None]
        mx.async_eval(
            *([tokens] if tokens is not None else []),
            *extra,
            self.storage.keys,
            self.storage.values,
        )
        self._last_tokens = tokens
        self._last_rows = {p.chunk.seq.request_id: i for i, p in enumerate(pending)}
        return Launched(pending, tokens)

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

    def _input_ids(self, chunks: Seq[ScheduledChunk], length: int) -> mx.array:
        """[B, L] input ids (right-padded with 0); a pending (still on-device) token is taken
        from the last step."""
        rows = [
            c.seq.all_ids[c.start : c.start + c.num_tokens] + [0] * (length - c.num_tokens)
            for c in chunks
        ]
        known = mx.array(rows, dtype=mx.int32)
        if all(PENDING_TOKEN not in row for row in rows):
            return known
        assert self._last_tokens is not None, "a pending token needs a launched step"
        assert all(c.num_tokens == 1 for c in chunks), "only decode inputs can be pending"
        source = [self._last_rows.get(c.seq.request_id, 0) for c in chunks]
        fetched = self._last_tokens[mx.array(source, dtype=mx.int32)][:, None]
        return mx.where(known == PENDING_TOKEN, fetched.astype(mx.int32), known)

    def _forward(self, chunks: Seq[ScheduledChunk]) -> mx.array:
        """Logits of each chunk's last position: [B, vocab] (lazy). Chunks of different
        lengths are right-padded; padded positions write to the null block, never read."""
        block_size = self.storage.block_size
        length = max(c.num_tokens for c in chunks)
        slots = [
            c.block_ids[pos // block_size] * block_size + pos % block_size
            if pos < c.start + c.num_tokens
            else 0
            for c in chunks
            for pos in range(c.start, c.start + length)
        ]
        blocks_needed = max(-(-(c.start + c.num_tokens) // block_size) for c in chunks)
        tables = [list(c.block_ids[:blocks_needed]) for c in chunks]
        for table in tables:
            table.extend([0] * (blocks_needed - len(table)))
        starts = mx.array([c.start for c in chunks], dtype=mx.int32)
        query_pos = starts[:, None] + mx.arange(length, dtype=mx.int32)[None, :]
        key_pos = mx.arange(blocks_needed * block_size, dtype=mx.int32)
        mask = key_pos[None, None, None, :] <= query_pos[:, None, :, None]
        meta = StepMeta(
            offsets=chunks[0].start if len(chunks) == 1 else starts,
            write_slots=mx.array(slots, dtype=mx.int32),
            read_slots=(
                mx.array(tables, dtype=mx.int32)[:, :, None] * block_size
                + mx.arange(block_size, dtype=mx.int32)
            ).reshape(len(chunks), -1),
            mask=mask,
        )
        ragged = any(c.num_tokens != length for c in chunks)
        last = mx.array([c.num_tokens - 1 for c in chunks], dtype=mx.int32) if ragged else None
        logits = last_position_logits(
            self.model, self._input_ids(chunks, length), self.storage.views(meta), last
        )
        # Schedule this forward now: the next forward's pool writes then find no pending
        # reader of the pools and update them in place instead of copying whole pools.
        mx.async_eval(logits, self.storage.keys, self.storage.values)
        return logits

    def _sample(
        self, chunks: Seq[ScheduledChunk], logits: mx.array, samplers: dict[str, RequestSampler]
    ) -> list[_Pending]:
        rows = [samplers[c.seq.request_id] for c in chunks]
        fast = [i for i, s in enumerate(rows) if s.plain_greedy and not s.params.logprobs]
        pending: list[_Pending] = []
        if fast:
            picked = mx.argmax(logits[mx.array(fast)] if len(fast) < len(rows) else logits, axis=-1)
            pending += [_Pending(chunks[i], picked[n], None) for n, i in enumerate(fast)]
        fast_set = set(fast)
        for i, sampler in enumerate(rows):
            if i in fast_set:
                continue
            row = sampler.process(chunks[i].seq.all_ids, logits[i : i + 1])
            logprobs = row - mx.logsumexp(row, axis=-1, keepdims=True)
            token = sampler.sample(logprobs)[0]
            pending.append(
                _Pending(chunks[i], token, logprobs[0] if sampler.params.logprobs else None)
            )
        return pending

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

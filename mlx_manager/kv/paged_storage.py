"""The MLX side of the paged KV cache: preallocated K/V block pools and per-step cache views.

What is paged: the K/V of every attention layer of a model whose mlx-lm cache is the plain
`KVCache` (llama, qwen, mistral, phi3, gemma 1/2 ...). Storage per layer is one preallocated
array `[1, n_kv_heads, num_blocks * block_size, head_dim]` (slot = block * block_size +
offset); a sequence's tokens live in the blocks of its block table. The layout is the one
attention reads (`[batch, heads, tokens, dim]`), so that a single sequence needs no reshapes
or transposes. A sequence whose blocks are one run of ids (the allocator prefers those) has
one contiguous range of slots: its forward writes and reads slices of the pools, exactly
mlx-lm's KVCache ops; a sequence decoding alone is moved into such a run when it is not in one
(`KVCacheManager.compact`, after a prefix-cache hit). Otherwise attention reads K/V by
gathering the sequence's blocks (works on every MLX backend; no fused paged-attention kernel
yet). What is not paged: models whose cache is not plain KVCache (sliding-window / rotating,
SSM or hybrid layers); those run on the single-sequence engine with mlx-lm's own caches.

The model files from mlx-lm are untouched: each layer gets a `PagedLayerCache` that answers the
protocol they call (`offset`, `update_and_fetch`, `make_mask`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import KVCache, create_attention_mask, make_prompt_cache

from mlx_manager.kv.block_pool import is_run


@dataclass(frozen=True, slots=True)
class KVLayout:
    num_layers: int
    n_kv_heads: int
    head_dim: int
    dtype: mx.Dtype

    def bytes_per_token(self) -> int:
        return 2 * self.num_layers * self.n_kv_heads * self.head_dim * self.dtype.size


def probe_kv_layout(model: Any) -> KVLayout | None:
    """K/V shape and dtype from one real forward; None when the model is not pageable."""
    cache = make_prompt_cache(model)
    if not cache or any(type(c) is not KVCache for c in cache):
        return None
    model(mx.array([[0]], dtype=mx.int32), cache=cache)
    keys = cache[0].keys
    assert keys is not None
    mx.eval(keys)
    return KVLayout(len(cache), keys.shape[1], keys.shape[3], keys.dtype)


@dataclass(frozen=True, slots=True)
class StepMeta:
    """Where one forward's new K/V go and what each sequence attends to (shared by layers).

    Contiguous (one sequence whose slots are one run of ids, the common case at batch 1):
    `write` is the slot of the first new token and `read` the slice of the sequence's slots,
    so a layer updates and reads its pools with one slice update and one slice each, as
    mlx-lm's own KVCache does. Gather (anything else): `write` is the slot of each new
    element, `[1, H, B * L, D]` (a broadcast view), and `read` the slots each sequence
    attends to, `[B, T]` (`[T]` for one sequence).
    """

    offsets: mx.array | int  # position of the first new token, per sequence
    write: int | mx.array
    read: slice | mx.array
    # [B, 1, L, T] bool; None when one sequence reads exactly its own tokens: it is then
    # masked as mlx-lm masks a single sequence (no mask to decode, causal to prefill).
    mask: mx.array | None


class PagedKVStorage:
    def __init__(self, layout: KVLayout, num_blocks: int, block_size: int) -> None:
        self.layout = layout
        self.num_blocks = num_blocks
        self.block_size = block_size
        shape = (1, layout.n_kv_heads, num_blocks * block_size, layout.head_dim)
        self.keys = [mx.zeros(shape, dtype=layout.dtype) for _ in range(layout.num_layers)]
        self.values = [mx.zeros(shape, dtype=layout.dtype) for _ in range(layout.num_layers)]
        self.block_offsets = mx.arange(block_size, dtype=mx.uint32)  # slot offsets in a block
        mx.eval(self.keys, self.values, self.block_offsets)

    @property
    def block_bytes(self) -> int:
        return self.block_size * self.layout.bytes_per_token()

    @property
    def nbytes(self) -> int:
        return self.num_blocks * self.block_bytes

    def block_slots(self, block_ids: mx.array) -> mx.array:
        """The slots of each block, in order: `[..., n]` block ids -> `[..., n * block_size]`."""
        slots = block_ids[..., None] * self.block_size + self.block_offsets
        return slots.reshape(*block_ids.shape[:-1], -1)

    def write_index(self, slots: mx.array) -> mx.array:
        """The gather path's `write`: `[N]` slots of the new tokens as `[1, H, N, D]`."""
        _, heads, _, dim = self.keys[0].shape
        return mx.broadcast_to(slots[None, None, :, None], (1, heads, slots.shape[0], dim))

    def sequence_meta(
        self, block_ids: Sequence[int], start: int, num_tokens: int, slices: bool = True
    ) -> StepMeta:
        """One sequence's forward of `num_tokens` from position `start`. It reads exactly its
        own tokens, so it needs no mask of ours; a block table that is one run of ids (and
        `slices`) is written and read as slices, else through a scatter and a gather."""
        size = self.block_size
        end = start + num_tokens
        num_blocks = -(-end // size)
        if slices and is_run(block_ids, num_blocks):
            base = block_ids[0] * size
            return StepMeta(start, base + start, slice(base, base + end), None)
        read = self.block_slots(mx.array(list(block_ids[:num_blocks]), dtype=mx.uint32))
        if end < num_blocks * size:
            read = read[:end]
        write = [block_ids[pos // size] * size + pos % size for pos in range(start, end)]
        return StepMeta(start, self.write_index(mx.array(write, dtype=mx.uint32)), read, None)

    def batch_meta(
        self, tables: Sequence[Sequence[int]], starts: Sequence[int], lengths: Sequence[int]
    ) -> StepMeta:
        """Several sequences' forward, right-padded to the longest chunk: padded positions
        write to the null block; each sequence reads its blocks padded with the null block to
        the longest table, under a mask."""
        size = self.block_size
        length = max(lengths)
        slots = [
            table[pos // size] * size + pos % size if pos < start + n else 0
            for table, start, n in zip(tables, starts, lengths, strict=True)
            for pos in range(start, start + length)
        ]
        num_blocks = max(-(-(start + n) // size) for start, n in zip(starts, lengths, strict=True))
        padded = [[*table[:num_blocks], *[0] * (num_blocks - len(table))] for table in tables]
        first = mx.array(list(starts), dtype=mx.int32)
        query_pos = first[:, None] + mx.arange(length, dtype=mx.int32)[None, :]
        key_pos = mx.arange(num_blocks * size, dtype=mx.int32)
        return StepMeta(
            offsets=first,
            write=self.write_index(mx.array(slots, dtype=mx.uint32)),
            read=self.block_slots(mx.array(padded, dtype=mx.uint32)),
            mask=key_pos[None, None, None, :] <= query_pos[:, None, :, None],
        )

    def copy_blocks(self, pairs: tuple[tuple[int, int], ...]) -> None:
        """Copy-on-write: duplicate whole blocks src -> dst in every layer.

        The source rows are evaluated before the scatter: a scatter whose update still reads
        the pool it writes cannot update that pool in place, and MLX then copies the whole
        pool (seconds on the CPU backend for a GB-sized pool, per layer). Copies are rare (a
        prefix-cache hit, a compaction), so the wait for the step in flight costs little."""
        if not pairs:
            return
        size = self.block_size
        src = mx.array([s * size + i for s, _ in pairs for i in range(size)], dtype=mx.uint32)
        dst = mx.array([d * size + i for _, d in pairs for i in range(size)], dtype=mx.uint32)
        every_pool = (self.keys, self.values)
        sources = [[pool[:, :, src] for pool in pools] for pools in every_pool]
        mx.eval(sources)  # one wait for every layer's K and V
        for pools, rows in zip(every_pool, sources, strict=True):
            for i, pool in enumerate(pools):
                pool[:, :, dst] = rows[i]
                pools[i] = pool

    def views(self, meta: StepMeta) -> list[PagedLayerCache]:
        return [PagedLayerCache(self, i, meta) for i in range(self.layout.num_layers)]


class PagedLayerCache:
    """One layer's cache for one forward pass, speaking mlx-lm's cache protocol."""

    def __init__(self, storage: PagedKVStorage, layer: int, meta: StepMeta) -> None:
        self._storage = storage
        self._layer = layer
        self._meta = meta
        self.offset = meta.offsets

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        storage, layer, meta = self._storage, self._layer, self._meta
        return _write_and_read(storage.keys, layer, keys, meta), _write_and_read(
            storage.values, layer, values, meta
        )

    def make_mask(
        self, n: int, return_array: bool = False, window_size: int | None = None, **_: Any
    ) -> mx.array | str | None:
        if self._meta.mask is not None:
            return self._meta.mask
        assert isinstance(self.offset, int)
        return create_attention_mask(n, self.offset, return_array, window_size)  # mlx-lm's own

    @property
    def state(self) -> tuple[()]:  # nothing to save: the storage owns the data
        return ()


def _write_and_read(pools: list[mx.array], layer: int, new: mx.array, meta: StepMeta) -> mx.array:
    """Store one layer's new K (or V) `[B, H, L, D]` and return what attention reads."""
    pool = pools[layer]
    write = meta.write
    if isinstance(write, int):  # contiguous: update in place and read a slice view
        pool[:, :, write : write + new.shape[2]] = new
        pools[layer] = pool
        return pool[:, :, meta.read]
    batch, heads, length, dim = new.shape
    if batch > 1:
        new = new.transpose(1, 0, 2, 3).reshape(1, heads, batch * length, dim)
    pool = mx.put_along_axis(pool, write, new, axis=2)
    pools[layer] = pool
    read = meta.read
    assert not isinstance(read, slice)
    if batch == 1:
        return mx.take(pool, read, axis=2)  # [1, H, T, D]: the fewest ops
    # [H, B, T, D] -> [B, H, T, D]. Indexing the 3-D view gathers D-long rows, which the CPU
    # backend does ~1.4x faster than `take` along axis 2 at batch 64.
    return pool.squeeze(0)[:, read].transpose(1, 0, 2, 3)

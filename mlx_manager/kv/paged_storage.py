"""The MLX side of the paged KV cache: preallocated K/V block pools and per-step cache views.

What is paged: the K/V of every attention layer of a model whose mlx-lm cache is the plain
`KVCache` (llama, qwen, mistral, phi3, gemma 1/2 ...). Storage per layer is one preallocated
array `[n_kv_heads, num_blocks * block_size, head_dim]` (slot = block * block_size + offset);
a sequence's tokens live in the blocks of its block table. Heads come first so that a
single sequence's gathered K/V is already in the `[1, heads, tokens, dim]` layout attention
reads: batch-1 decode needs one scatter and one gather per layer and no transposes.
Attention reads K/V by gathering the sequence's blocks (a gather path that works on every MLX
backend; no fused paged-attention kernel yet). What is not paged: models
whose cache is not plain KVCache (sliding-window / rotating, SSM or hybrid layers); those run on
the single-sequence engine with mlx-lm's own caches.

The model files from mlx-lm are untouched: each layer gets a `PagedLayerCache` that answers the
protocol they call (`offset`, `update_and_fetch`, `make_mask`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import KVCache, make_prompt_cache


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
    """Where this forward's tokens go and what each sequence attends to (shared by layers)."""

    offsets: mx.array | int  # position of the first new token, per sequence
    write_slots: mx.array  # [B * L] flat slot of each new token (block * block_size + offset)
    read_slots: mx.array  # [B, T] slots of each sequence's blocks, padded with the null block
    mask: mx.array  # [B, 1, L, T] bool


class PagedKVStorage:
    def __init__(self, layout: KVLayout, num_blocks: int, block_size: int) -> None:
        self.layout = layout
        self.num_blocks = num_blocks
        self.block_size = block_size
        shape = (layout.n_kv_heads, num_blocks * block_size, layout.head_dim)
        self.keys = [mx.zeros(shape, dtype=layout.dtype) for _ in range(layout.num_layers)]
        self.values = [mx.zeros(shape, dtype=layout.dtype) for _ in range(layout.num_layers)]
        mx.eval(self.keys, self.values)

    @property
    def block_bytes(self) -> int:
        return self.block_size * self.layout.bytes_per_token()

    @property
    def nbytes(self) -> int:
        return self.num_blocks * self.block_bytes

    def copy_blocks(self, pairs: tuple[tuple[int, int], ...]) -> None:
        """Copy-on-write: duplicate whole blocks src -> dst in every layer."""
        if not pairs:
            return
        size = self.block_size
        src = mx.array([s * size + i for s, _ in pairs for i in range(size)], dtype=mx.int32)
        dst = mx.array([d * size + i for _, d in pairs for i in range(size)], dtype=mx.int32)
        for pools in (self.keys, self.values):
            for i, pool in enumerate(pools):
                pool[:, dst] = pool[:, src]
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
        return self._write_and_gather(self._storage.keys, keys), self._write_and_gather(
            self._storage.values, values
        )

    def _write_and_gather(self, pools: list[mx.array], new: mx.array) -> mx.array:
        batch, heads, length, dim = new.shape
        if batch == 1:
            update = new.reshape(heads, length, dim)
        else:
            update = new.transpose(1, 0, 2, 3).reshape(heads, batch * length, dim)
        pool = pools[self._layer]
        pool[:, self._meta.write_slots] = update
        pools[self._layer] = pool
        gathered = pool[:, self._meta.read_slots]  # [H, B, T, D]
        if batch == 1:
            return gathered.reshape(1, heads, -1, dim)
        return gathered.transpose(1, 0, 2, 3)

    def make_mask(self, n: int, return_array: bool = False, **_: Any) -> mx.array:
        return self._meta.mask

    @property
    def state(self) -> tuple[()]:  # nothing to save: the storage owns the data
        return ()

"""PagedKVStorage: a run of block ids is written and read as slices, anything else through a
scatter and a gather; both store and return exactly the K/V that were written."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.models.base import create_causal_mask

from mlx_manager.kv.paged_storage import KVLayout, PagedKVStorage, StepMeta, is_run

LAYOUT = KVLayout(num_layers=2, n_kv_heads=2, head_dim=4, dtype=mx.float32)
BLOCK_SIZE = 4


def storage() -> PagedKVStorage:
    return PagedKVStorage(LAYOUT, num_blocks=10, block_size=BLOCK_SIZE)


def forward(store: PagedKVStorage, meta: StepMeta, new: list[mx.array]) -> list[mx.array]:
    """The keys each layer's attention reads after storing `new[layer]` as its K (and
    `-new[layer]` as its V: the values read must be the keys' negation)."""
    reads = []
    for cache, k in zip(store.views(meta), new, strict=True):
        keys, values = cache.update_and_fetch(k, -k)
        assert mx.array_equal(values, -keys)
        reads.append(keys)
    return reads


def chunks(seed: int, lengths: list[int], batch: int = 1) -> list[list[mx.array]]:
    """Random new K per chunk and layer: [batch, heads, length, dim]."""
    mx.random.seed(seed)
    shape = (batch, LAYOUT.n_kv_heads)
    return [
        [mx.random.normal((*shape, n, LAYOUT.head_dim)) for _ in range(LAYOUT.num_layers)]
        for n in lengths
    ]


def test_is_run() -> None:
    assert is_run((7,), 1)
    assert is_run((3, 4), 2)
    assert is_run((3, 4, 5, 9), 3)  # only the first n count
    assert not is_run((3, 5), 2)
    assert not is_run((3, 5, 4, 6), 4)  # same ends, not a run
    assert not is_run((5, 4, 3), 3)


@pytest.mark.parametrize("table", [(3, 4, 5), (6, 2, 8)])
def test_one_sequence_reads_back_exactly_its_tokens(table: tuple[int, ...]) -> None:
    """Prefill 6, a chunk of 3 crossing a block boundary, then a decode, on both paths."""
    contiguous = is_run(table, len(table))
    fast, gathered = storage(), storage()
    written: list[list[mx.array]] = [[] for _ in range(LAYOUT.num_layers)]
    start = 0
    for new in chunks(0, [6, 3, 1]):
        n = new[0].shape[2]
        meta = fast.sequence_meta(table, start, n)
        assert isinstance(meta.write, int) is contiguous
        assert meta.mask is None and meta.offsets == start
        if contiguous:
            assert meta.read == slice(3 * BLOCK_SIZE, 3 * BLOCK_SIZE + start + n)
        slow_meta = gathered.sequence_meta(table, start, n, slices=False)
        assert not isinstance(slow_meta.write, int)
        fast_reads = forward(fast, meta, new)
        slow_reads = forward(gathered, slow_meta, new)
        for layer in range(LAYOUT.num_layers):
            written[layer].append(new[layer])
            expected = mx.concatenate(written[layer], axis=2)
            assert fast_reads[layer].shape == (1, LAYOUT.n_kv_heads, start + n, LAYOUT.head_dim)
            assert mx.array_equal(fast_reads[layer], expected)
            assert mx.array_equal(slow_reads[layer], expected)
        start += n
    for a, b in zip(fast.keys + fast.values, gathered.keys + gathered.values, strict=True):
        assert mx.array_equal(a, b)  # the same slots hold the same K/V
    slots = [b * BLOCK_SIZE + i for b in table for i in range(BLOCK_SIZE)][:start]
    keys = mx.concatenate(written[0], axis=2)
    assert mx.array_equal(fast.keys[0][:, :, mx.array(slots)], keys)


def test_a_batch_reads_its_tokens_padded_and_masked() -> None:
    store = storage()
    tables, lengths = [(1, 2), (5, 3, 7)], [5, 9]
    first = chunks(1, [9], batch=2)[0]
    # Each sequence prefills alone (gather path for the second), then both decode together.
    for row, (table, n) in enumerate(zip(tables, lengths, strict=True)):
        forward(store, store.sequence_meta(table, 0, n), [k[row : row + 1, :, :n] for k in first])
    new = chunks(2, [1], batch=2)[0]
    meta = store.batch_meta(tables, lengths, [1, 1])
    assert meta.mask is not None and meta.mask.shape == (2, 1, 1, 3 * BLOCK_SIZE)
    reads = forward(store, meta, new)
    for row, n in enumerate(lengths):
        expected = mx.concatenate([first[0][row : row + 1, :, :n], new[0][row : row + 1]], axis=2)
        assert mx.array_equal(reads[0][row : row + 1, :, : n + 1], expected)
        assert meta.mask[row, 0, 0].tolist() == [i <= n for i in range(3 * BLOCK_SIZE)]


def test_one_sequence_is_masked_as_mlx_lm_masks_it() -> None:
    store = storage()
    cache = store.views(store.sequence_meta((1, 2, 3), 5, 1))[0]
    assert cache.make_mask(1) is None  # decode: attends to every token it reads
    cache = store.views(store.sequence_meta((1, 2, 3), 5, 4))[0]
    assert cache.make_mask(4) == "causal"
    assert mx.array_equal(cache.make_mask(4, return_array=True), create_causal_mask(4, 5))


def test_copy_blocks_duplicates_every_layer() -> None:
    store = storage()
    forward(store, store.sequence_meta((2,), 0, 4), chunks(3, [4])[0])
    store.copy_blocks(((2, 6),))
    for pool in store.keys + store.values:
        assert mx.array_equal(pool[:, :, 24:28], pool[:, :, 8:12])


def test_copy_blocks_updates_the_pools_in_place() -> None:
    """A copy must not duplicate whole pools: a scatter whose update still reads the pool it
    writes copies that pool (seconds per GB on the CPU backend, at every prefix-cache hit).
    Whether it does is a race with the stream's worker, lost whenever a step is in flight:
    the test puts one there."""
    store = PagedKVStorage(LAYOUT, num_blocks=20_000, block_size=BLOCK_SIZE)  # 2.5 MB pools
    # Written pools (fresh ones are broadcast zeros, which any first write materializes).
    store.keys = [mx.random.normal(pool.shape) for pool in store.keys]
    store.values = [mx.random.normal(pool.shape) for pool in store.values]
    pool_bytes = store.keys[0].nbytes
    square = mx.random.normal((512, 512))
    mx.eval(store.keys, store.values, square)
    expected = [np.array(pool[:, :, 8:16]) for pool in store.keys + store.values]
    for _ in range(3):
        in_flight = square
        for _ in range(8):
            in_flight = in_flight @ square
        mx.async_eval(in_flight)
        mx.clear_cache()
        mx.reset_peak_memory()
        before = mx.get_active_memory()
        store.copy_blocks(((2, 6), (3, 7)))
        mx.eval(store.keys, store.values, in_flight)
        assert mx.get_peak_memory() - before < pool_bytes // 4
    for pool, rows in zip(store.keys + store.values, expected, strict=True):
        assert np.array_equal(np.array(pool[:, :, 24:32]), rows)

"""BlockPool: exact block ids, ref counts, free-queue order and eviction."""

from __future__ import annotations

import pytest

from mlx_manager.kv.block_pool import NULL_BLOCK_ID, BlockPool

H1, H2, H3 = b"h1", b"h2", b"h3"


def ids(blocks) -> list[int]:
    return [b.block_id for b in blocks]


def test_block_zero_is_reserved_and_allocation_goes_in_id_order() -> None:
    pool = BlockPool(8)
    assert pool.free_block_ids() == [1, 2, 3, 4, 5, 6, 7]
    assert ids(pool.get_new_blocks(3)) == [1, 2, 3]
    assert ids(pool.get_new_blocks(4)) == [4, 5, 6, 7]
    assert pool.num_free_blocks == 0
    assert pool.null_block.block_id == NULL_BLOCK_ID
    assert pool.null_block.ref_count == 0
    with pytest.raises(ValueError):
        pool.get_new_blocks(1)


def test_pool_needs_a_usable_block() -> None:
    with pytest.raises(ValueError):
        BlockPool(1)


def test_new_blocks_have_one_holder_and_freeing_returns_them() -> None:
    pool = BlockPool(8)
    blocks = pool.get_new_blocks(2)
    assert [b.ref_count for b in blocks] == [1, 1]
    pool.free_blocks(reversed(blocks))
    assert [b.ref_count for b in blocks] == [0, 0]
    # Unhashed blocks carry nothing worth keeping: they go to the front, reused first.
    assert pool.free_block_ids() == [1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError):
        pool.free_blocks([blocks[0]])


def test_freed_hashed_blocks_go_to_the_back_in_the_order_given() -> None:
    pool = BlockPool(8)
    b1, b2, b3 = pool.get_new_blocks(3)
    assert pool.cache_block(b1, H1) and pool.cache_block(b2, H2)
    pool.free_blocks([b3, b2, b1])  # a sequence's blocks, tail first
    assert pool.free_block_ids() == [3, 4, 5, 6, 7, 2, 1]
    assert pool.num_free_blocks == 7
    assert pool.num_cached_blocks == 2


def test_allocation_evicts_least_recently_freed_cached_blocks_first() -> None:
    pool = BlockPool(8)
    b1, b2, b3 = pool.get_new_blocks(3)
    pool.cache_block(b1, H1)
    pool.cache_block(b2, H2)
    pool.free_blocks([b3, b2, b1])
    assert ids(pool.get_new_blocks(5)) == [3, 4, 5, 6, 7]
    assert pool.num_cached_blocks == 2
    (evicted,) = pool.get_new_blocks(1)
    assert evicted is b2 and b2.block_hash is None and b2.ref_count == 1
    assert pool.get_cached_block(H2) is None
    assert pool.get_cached_block(H1) is b1
    assert pool.num_cached_blocks == 1


def test_touch_takes_a_cached_free_block_out_of_the_middle_of_the_queue() -> None:
    pool = BlockPool(8)
    b1, b2 = pool.get_new_blocks(2)
    pool.cache_block(b1, H1)
    pool.cache_block(b2, H2)
    pool.free_blocks([b2, b1])
    assert pool.free_block_ids() == [3, 4, 5, 6, 7, 2, 1]
    pool.touch([pool.get_cached_block(H2)])  # type: ignore[list-item]
    assert b2.ref_count == 1
    assert pool.free_block_ids() == [3, 4, 5, 6, 7, 1]
    pool.touch([b2])  # a second holder
    assert b2.ref_count == 2
    pool.free_blocks([b2])
    assert b2.ref_count == 1 and 2 not in pool.free_block_ids()
    pool.free_blocks([b2])
    assert pool.free_block_ids() == [3, 4, 5, 6, 7, 1, 2]  # most recently freed at the back


def test_cache_block_keeps_the_first_block_for_a_hash() -> None:
    pool = BlockPool(8)
    b1, b2 = pool.get_new_blocks(2)
    assert pool.cache_block(b1, H1)
    assert pool.cache_block(b1, H1)  # idempotent
    assert not pool.cache_block(b2, H1)
    assert b2.block_hash is None
    assert pool.get_cached_block(H1) is b1
    assert not pool.cache_block(b1, H3)  # a block holds one hash
    assert pool.num_cached_blocks == 1


def test_allocation_continues_a_run_of_ids_through_free_unhashed_blocks() -> None:
    pool = BlockPool(10)
    b1, b2, b3 = pool.get_new_blocks(3)
    pool.free_blocks([b2])
    assert pool.free_block_ids() == [2, 4, 5, 6, 7, 8, 9]
    # After block 3: 4 and 5 are free, though 2 is at the front.
    assert ids(pool.get_new_blocks(2, after=3)) == [4, 5]
    assert pool.free_block_ids() == [2, 6, 7, 8, 9]
    # After block 1: 2 is free, 3 is held: the run stops and the front goes next.
    assert ids(pool.get_new_blocks(2, after=1)) == [2, 6]
    assert ids(pool.get_new_blocks(2, after=9)) == [7, 8]  # no block 10: the front
    assert [b.ref_count for b in (b1, b3)] == [1, 1]


def test_a_run_never_takes_a_cached_block_out_of_lru_order() -> None:
    pool = BlockPool(8)
    _, b2, b3 = pool.get_new_blocks(3)
    pool.cache_block(b2, H2)
    pool.free_blocks([b3, b2])
    assert pool.free_block_ids() == [3, 4, 5, 6, 7, 2]
    # Block 2 follows block 1 but holds a cached prefix: the unhashed front block goes instead.
    assert ids(pool.get_new_blocks(1, after=1)) == [3]
    assert pool.get_cached_block(H2) is b2 and b2.ref_count == 0
    assert ids(pool.get_new_blocks(4, after=3)) == [4, 5, 6, 7]
    # Only hashed blocks are left: they go in LRU order, the run preference aside.
    assert ids(pool.get_new_blocks(1, after=1)) == [2]
    assert pool.get_cached_block(H2) is None


def test_take_run_takes_consecutive_free_unhashed_ids() -> None:
    pool = BlockPool(12)
    pool.get_new_blocks(3)  # 1 2 3 held
    assert ids(pool.take_run(4) or []) == [4, 5, 6, 7]
    assert [b.ref_count for b in pool.blocks[4:8]] == [1, 1, 1, 1]
    assert pool.free_block_ids() == [8, 9, 10, 11]
    assert pool.take_run(5) is None  # only 4 free
    assert pool.free_block_ids() == [8, 9, 10, 11]  # nothing taken


def test_take_run_prefers_a_run_with_room_to_grow_and_skips_hashed_blocks() -> None:
    pool = BlockPool(16)
    held = pool.get_new_blocks(15)
    # Free 8-14, then 1-2 (unhashed, tail first as tables are freed), and 5 (hashed).
    pool.cache_block(held[4], H1)
    pool.free_blocks([held[4]])
    pool.free_blocks(reversed(held[7:14]))
    pool.free_blocks(reversed(held[0:2]))
    assert pool.free_block_ids() == [1, 2, 8, 9, 10, 11, 12, 13, 14, 5]
    assert ids(pool.take_run(2, slack=3) or []) == [8, 9]  # 1-2 has no room after it
    assert ids(pool.take_run(2, slack=9) or []) == [1, 2]  # no room anywhere: the first run
    assert pool.take_run(6) is None  # 10..14 is 5 long; 5 is hashed, never taken
    assert pool.num_cached_blocks == 1

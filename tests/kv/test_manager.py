"""KVCacheManager: block tables, prefix hits, copy-on-write, all-or-nothing, eviction order."""

from __future__ import annotations

from mlx_manager.engine.sequence import Sequence
from mlx_manager.kv.hashing import block_hash
from mlx_manager.kv.manager import KVCacheManager
from tests.engine.factories import NAMESPACE, make_kv, make_seq


def compute(kv: KVCacheManager, seq: Sequence, num_tokens: int) -> None:
    """What a step does for `seq`: its K/V for `num_tokens` more tokens are now written."""
    seq.num_computed_tokens += num_tokens
    kv.cache_full_blocks(seq, seq.num_computed_tokens)


def admit(kv: KVCacheManager, seq: Sequence) -> list[tuple[int, int]] | None:
    """Admission as the scheduler does it: prefix lookup, then allocate the rest."""
    prefix, num_hit = kv.lookup_prefix(seq)
    seq.num_computed_tokens = num_hit
    return kv.allocate(seq, seq.num_tokens - num_hit, prefix)


def refs(kv: KVCacheManager, *block_ids: int) -> list[int]:
    return [kv.pool.blocks[i].ref_count for i in block_ids]


def test_allocate_builds_the_table_and_grows_it_a_block_at_a_time() -> None:
    kv = make_kv(num_blocks=8)
    seq = make_seq(num_prompt=10)
    assert kv.allocate(seq, 10, []) == []
    assert kv.block_ids(seq) == [1, 2, 3]
    compute(kv, seq, 10)
    seq.append_token(7)
    assert kv.allocate(seq, 1) == []  # position 10 still in block 3
    compute(kv, seq, 1)
    seq.append_token(7)
    assert kv.block_ids(seq) == [1, 2, 3]
    assert kv.allocate(seq, 1) == []  # position 11
    compute(kv, seq, 1)
    seq.append_token(7)
    assert kv.allocate(seq, 1) == []  # position 12 opens block 4
    assert kv.block_ids(seq) == [1, 2, 3, 4]
    assert kv.num_free_blocks() == 3
    assert kv.usage() == 4 / 7


def test_allocation_is_all_or_nothing() -> None:
    kv = make_kv(num_blocks=8)  # 7 usable blocks
    a = make_seq("a", num_prompt=20)
    assert kv.allocate(a, 20, []) == []
    assert kv.block_ids(a) == [1, 2, 3, 4, 5]
    b = make_seq("b", num_prompt=12, first_token=500)
    assert kv.allocate(b, 12, []) is None  # needs 3, 2 free
    assert kv.block_ids(b) == []
    assert kv.num_free_blocks() == 2
    assert kv.allocate(b, 8, []) == []
    assert kv.block_ids(b) == [6, 7]


def test_full_blocks_are_hashed_in_a_chain_once_computed() -> None:
    kv = make_kv()
    seq = make_seq(num_prompt=10)
    kv.allocate(seq, 10, [])
    compute(kv, seq, 6)
    assert kv.pool.num_cached_blocks == 1
    compute(kv, seq, 4)
    assert kv.pool.num_cached_blocks == 2
    h1 = block_hash(None, [100, 101, 102, 103], NAMESPACE)
    h2 = block_hash(h1, [104, 105, 106, 107], NAMESPACE)
    assert kv.pool.blocks[1].block_hash == h1
    assert kv.pool.blocks[2].block_hash == h2
    assert kv.pool.blocks[3].block_hash is None  # partial


def test_only_written_blocks_of_known_tokens_are_hashed() -> None:
    kv = make_kv()
    seq = make_seq(num_prompt=7)
    kv.allocate(seq, 7, [])
    seq.num_computed_tokens = 7
    seq.num_inflight_tokens = 1  # the token at position 7 is sampled, its value not known yet
    kv.allocate(seq, 1)  # the next step computes position 7, fed from the device
    seq.num_computed_tokens = 8
    kv.cache_full_blocks(seq, 4)  # a step wrote positions 0-3
    assert [b.block_id for b in kv.pool.blocks if b.block_hash is not None] == [1]
    kv.cache_full_blocks(seq, 8)  # block 2 is written, but position 7's value is unknown
    assert kv.pool.blocks[2].block_hash is None
    seq.append_token(50)
    seq.num_inflight_tokens = 0
    kv.cache_full_blocks(seq, 8)
    h1 = block_hash(None, [100, 101, 102, 103], NAMESPACE)
    assert kv.pool.blocks[2].block_hash == block_hash(h1, [104, 105, 106, 50], NAMESPACE)


def test_prefix_hit_on_a_running_request_shares_its_blocks() -> None:
    kv = make_kv()
    a = make_seq("a", num_prompt=10)
    admit(kv, a)
    compute(kv, a, 10)
    b = make_seq("b", prompt=[*range(100, 108), 1, 2, 3])  # shares 8 tokens = 2 blocks
    prefix, num_hit = kv.lookup_prefix(b)
    assert [blk.block_id for blk in prefix] == [1, 2]
    assert num_hit == 8
    b.num_computed_tokens = num_hit
    assert kv.allocate(b, 3, prefix) == []
    assert kv.block_ids(b) == [1, 2, 4]
    assert refs(kv, 1, 2, 3, 4) == [2, 2, 1, 1]
    kv.free(a)
    assert refs(kv, 1, 2, 3) == [1, 1, 0]
    assert kv.pool.free_block_ids()[0] == 3  # a's unhashed tail block is reused first


def test_prefix_hit_on_a_finished_request_reclaims_its_free_blocks() -> None:
    kv = make_kv(num_blocks=8)
    a = make_seq("a", num_prompt=10)
    admit(kv, a)
    compute(kv, a, 10)
    kv.free(a)
    assert kv.pool.free_block_ids() == [3, 4, 5, 6, 7, 2, 1]
    b = make_seq("b", prompt=[*range(100, 108), 1, 2, 3])
    assert admit(kv, b) == []
    assert b.num_computed_tokens == 8
    assert kv.block_ids(b) == [1, 2, 3]
    assert refs(kv, 1, 2, 3) == [1, 1, 1]
    assert kv.pool.free_block_ids() == [4, 5, 6, 7]


def test_namespaces_isolate_models() -> None:
    tokens = [1, 2, 3, 4]
    assert block_hash(None, tokens, "model-a") != block_hash(None, tokens, "model-b")
    kv = make_kv(namespace="model-a")
    a = make_seq("a", num_prompt=8)
    admit(kv, a)
    compute(kv, a, 8)
    same_tokens = make_seq("b", num_prompt=9)
    assert kv.lookup_prefix(same_tokens)[1] == 8
    kv.namespace = "model-b"  # the same pool, as seen by another model id
    assert kv.lookup_prefix(same_tokens) == ([], 0)


def test_full_prefix_hit_recomputes_the_last_token_with_copy_on_write() -> None:
    kv = make_kv(num_blocks=8)
    a = make_seq("a", num_prompt=8)
    admit(kv, a)
    compute(kv, a, 8)  # blocks 1, 2 full and cached, a still running
    b = make_seq("b", num_prompt=8)
    prefix, num_hit = kv.lookup_prefix(b)
    assert num_hit == 7  # the last token must run again for its logits
    b.num_computed_tokens = num_hit
    assert kv.allocate(b, 1, prefix) == [(2, 3)]
    assert kv.block_ids(b) == [1, 3]
    assert refs(kv, 1, 2, 3) == [2, 1, 1]  # block 2's extra holder dropped
    compute(kv, b, 1)
    assert kv.pool.num_cached_blocks == 2  # block 3 duplicates block 2's hash: not registered
    assert kv.pool.blocks[3].block_hash is None


def test_copy_on_write_of_a_finished_requests_block_leaves_it_cached() -> None:
    kv = make_kv(num_blocks=8)
    a = make_seq("a", num_prompt=8)
    admit(kv, a)
    compute(kv, a, 8)
    kv.free(a)
    assert kv.pool.free_block_ids() == [3, 4, 5, 6, 7, 2, 1]
    b = make_seq("b", num_prompt=8)
    assert admit(kv, b) == [(2, 3)]
    assert kv.block_ids(b) == [1, 3]
    assert refs(kv, 1, 2, 3) == [1, 0, 1]
    assert kv.pool.free_block_ids() == [4, 5, 6, 7, 2]
    assert kv.pool.get_cached_block(kv.pool.blocks[2].block_hash or b"") is kv.pool.blocks[2]


def test_copy_on_write_counts_its_block_before_taking_any() -> None:
    kv = make_kv(num_blocks=4)  # 3 usable
    a = make_seq("a", num_prompt=8)
    admit(kv, a)
    compute(kv, a, 8)
    filler = make_seq("f", num_prompt=4, first_token=900)
    assert admit(kv, filler) == []  # the last free block
    b = make_seq("b", num_prompt=8)
    assert admit(kv, b) is None  # the copy needs a free block
    assert kv.block_ids(b) == [] and refs(kv, 1, 2) == [1, 1]
    kv.free(filler)
    b.num_computed_tokens = 0
    assert admit(kv, b) == [(2, 3)]


def test_freed_cached_blocks_are_evicted_tail_first_in_lru_order() -> None:
    kv = make_kv(num_blocks=6)  # 5 usable
    a = make_seq("a", num_prompt=12)
    admit(kv, a)
    compute(kv, a, 12)
    kv.free(a)  # hashed 3, 2, 1 join the back of the queue, tail first
    assert kv.pool.free_block_ids() == [4, 5, 3, 2, 1]
    b = make_seq("b", num_prompt=12, first_token=500)
    assert admit(kv, b) == []
    assert kv.block_ids(b) == [4, 5, 3]  # evicts a's third block only
    c = make_seq("c", num_prompt=13)
    prefix, num_hit = kv.lookup_prefix(c)
    assert [blk.block_id for blk in prefix] == [1, 2] and num_hit == 8


def test_free_forgets_the_table_and_is_idempotent() -> None:
    kv = make_kv(num_blocks=8)
    seq = make_seq(num_prompt=5)
    admit(kv, seq)
    kv.free(seq)
    kv.free(seq)
    assert kv.block_ids(seq) == []
    assert kv.num_free_blocks() == 7 and kv.usage() == 0.0


def test_prefix_hit_rate_counts_first_admissions() -> None:
    kv = make_kv()
    assert kv.prefix_hit_rate() == 0.0
    a = make_seq("a", num_prompt=8)
    admit(kv, a)
    compute(kv, a, 8)
    b = make_seq("b", prompt=[*range(100, 108), 1, 2, 3, 4])
    admit(kv, b)
    assert (kv.prefix_queried_tokens, kv.prefix_hit_tokens) == (20, 8)
    assert kv.prefix_hit_rate() == 8 / 20
    kv.free(b)
    b.num_preemptions = 1  # a recompute is not a new query
    admit(kv, b)
    assert kv.prefix_queried_tokens == 20


def test_prefix_caching_can_be_disabled() -> None:
    kv = make_kv(prefix=False)
    a = make_seq("a", num_prompt=8)
    admit(kv, a)
    compute(kv, a, 8)
    assert kv.pool.num_cached_blocks == 0
    assert kv.lookup_prefix(make_seq("b", num_prompt=8)) == ([], 0)
    assert kv.max_seq_tokens == 15 * 4  # no block held back for copy-on-write


def test_max_seq_tokens_keeps_a_block_for_copy_on_write() -> None:
    assert make_kv(num_blocks=16).max_seq_tokens == 14 * 4


def test_a_growing_sequence_takes_the_free_block_after_its_last() -> None:
    kv = make_kv(num_blocks=10)
    a = make_seq("a", num_prompt=8)
    b = make_seq("b", num_prompt=4, first_token=500)
    c = make_seq("c", num_prompt=4, first_token=600)
    for seq in (a, b, c):
        admit(kv, seq)
    assert (kv.block_ids(a), kv.block_ids(b), kv.block_ids(c)) == ([1, 2], [3], [4])
    kv.free(b)
    kv.free(c)
    assert kv.pool.free_block_ids() == [4, 3, 5, 6, 7, 8, 9]
    compute(kv, a, 8)
    a.append_token(7)
    assert kv.allocate(a, 1) == []
    assert kv.block_ids(a) == [1, 2, 3]  # not 4, the front: a's slots stay one range
    assert kv.pool.free_block_ids() == [4, 5, 6, 7, 8, 9]


def test_compact_moves_a_prefix_hit_into_one_run_and_keeps_the_prefix_cached() -> None:
    kv = make_kv(num_blocks=16)
    a = make_seq("a", num_prompt=10)
    admit(kv, a)
    compute(kv, a, 10)
    b = make_seq("b", prompt=[*range(100, 108), 1, 2, 3])  # shares a's blocks 1 and 2
    admit(kv, b)
    assert kv.block_ids(b) == [1, 2, 4]
    assert kv.compact(b, slack=2) == [(1, 5), (2, 6), (4, 7)]
    assert kv.block_ids(b) == [5, 6, 7]
    assert refs(kv, 1, 2, 4, 5, 6, 7) == [1, 1, 0, 1, 1, 1]  # a still holds 1 and 2
    assert kv.pool.free_block_ids()[0] == 4  # b's old unhashed block is reused first
    assert kv.compact(b) is None  # already a run
    kv.free(a)
    c = make_seq("c", prompt=[*range(100, 108), 9])
    prefix, num_hit = kv.lookup_prefix(c)
    assert [blk.block_id for blk in prefix] == [1, 2] and num_hit == 8  # still cached
    compute(kv, b, 3)
    b.append_token(5)
    assert kv.allocate(b, 1) == []
    assert kv.block_ids(b) == [5, 6, 7]  # the 12th token fits block 7


def test_compact_changes_nothing_without_a_free_run() -> None:
    kv = make_kv(num_blocks=6)
    a = make_seq("a", num_prompt=10)
    admit(kv, a)
    compute(kv, a, 10)
    b = make_seq("b", prompt=[*range(100, 108), 1, 2, 3])
    admit(kv, b)
    assert kv.block_ids(b) == [1, 2, 4]
    assert kv.compact(b) is None  # only block 5 is free
    assert kv.block_ids(b) == [1, 2, 4] and refs(kv, 1, 2, 4) == [2, 2, 1]

"""Scheduler: continuous batching, chunked prefill, budget, preemption, priority, aging, abort."""

from __future__ import annotations

import pytest

from mlx_manager.engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput, priority_key
from mlx_manager.engine.sequence import Sequence, SequenceStatus
from mlx_manager.kv.hashing import block_hash
from tests.engine.factories import (
    NAMESPACE,
    FakeClock,
    make_scheduler,
    make_seq,
    run_step,
    summary,
)


def test_a_sequence_prefills_then_decodes_then_finishes() -> None:
    sched = make_scheduler(num_blocks=8)
    seq = make_seq("a", num_prompt=6, max_tokens=3)
    sched.add(seq)
    out = run_step(sched)
    (chunk,) = out.chunks
    assert (chunk.start, chunk.num_tokens, chunk.block_ids, chunk.samples) == (0, 6, (1, 2), True)
    assert seq.status is SequenceStatus.RUNNING and seq.output_ids == [7]
    assert seq.num_computed_tokens == 6
    out = run_step(sched)
    assert summary(out) == [("a", 6, 1)] and out.chunks[0].block_ids == (1, 2)
    out = run_step(sched)
    assert summary(out) == [("a", 7, 1)]
    assert out.chunks[0].block_ids == (1, 2)
    assert seq.status is SequenceStatus.FINISHED and seq.output_ids == [7, 7, 7]
    assert not sched.has_work() and sched.kv.num_free_blocks() == 7
    assert sched.schedule().is_empty


def test_requests_join_and_leave_the_running_batch_every_step() -> None:
    sched = make_scheduler()
    sched.add(make_seq("a", num_prompt=4, max_tokens=2))
    run_step(sched)
    sched.add(make_seq("b", num_prompt=4, first_token=200, max_tokens=2))
    out = run_step(sched)
    assert summary(out) == [("a", 4, 1), ("b", 0, 4)]  # a finishes here
    assert [s.request_id for s in sched.running] == ["b"]
    assert summary(run_step(sched)) == [("b", 4, 1)]
    assert not sched.has_work()


def test_chunked_prefill_shares_the_budget_and_decodes_never_stall() -> None:
    sched = make_scheduler(
        num_blocks=32, max_num_seqs=4, max_num_batched_tokens=8, max_prefill_chunk=6
    )
    sched.add(make_seq("a", num_prompt=2, max_tokens=50))
    sched.add(make_seq("b", num_prompt=2, first_token=200, max_tokens=50, arrival=1))
    run_step(sched)
    sched.add(make_seq("c", num_prompt=20, first_token=300, arrival=2))
    steps = [summary(run_step(sched)) for _ in range(4)]
    assert steps == [
        [("a", 2, 1), ("b", 2, 1), ("c", 0, 6)],
        [("a", 3, 1), ("b", 3, 1), ("c", 6, 6)],
        [("a", 4, 1), ("b", 4, 1), ("c", 12, 6)],
        [("a", 5, 1), ("b", 5, 1), ("c", 18, 2)],
    ]
    c = sched.running[2]
    assert c.request_id == "c" and c.output_ids == [7] and c.num_computed_tokens == 20


def test_decodes_come_first_and_a_prefill_gets_what_is_left() -> None:
    sched = make_scheduler(num_blocks=32, max_num_seqs=2, max_num_batched_tokens=4)
    sched.add(make_seq("long", num_prompt=10, priority=0))
    sched.add(make_seq("short", num_prompt=3, first_token=200, priority=1))
    assert summary(run_step(sched)) == [("long", 0, 4)]
    assert summary(run_step(sched)) == [("long", 4, 4)]
    assert summary(run_step(sched)) == [("long", 8, 2), ("short", 0, 2)]
    assert summary(run_step(sched)) == [("long", 10, 1), ("short", 2, 1)]
    out = run_step(sched)
    assert summary(out) == [("long", 11, 1), ("short", 3, 1)]
    assert all(c.samples for c in out.chunks)


def test_max_num_seqs_caps_the_running_batch() -> None:
    sched = make_scheduler(max_num_seqs=2)
    for i in range(3):
        sched.add(make_seq(f"s{i}", num_prompt=4, first_token=100 * i, arrival=i))
    out = run_step(sched)
    assert [c.seq.request_id for c in out.chunks] == ["s0", "s1"]
    assert [s.request_id for s in sched.waiting] == ["s2"]


def test_admission_waits_for_blocks_and_keeps_head_of_line_order() -> None:
    sched = make_scheduler(num_blocks=8)  # 7 usable blocks, 6 per sequence (one kept for COW)
    sched.add(make_seq("big", num_prompt=20, max_tokens=2))
    run_step(sched)  # big holds blocks 1..5
    sched.add(make_seq("next", num_prompt=12, first_token=300, arrival=1))
    sched.add(make_seq("small", num_prompt=4, first_token=400, arrival=2))
    out = run_step(sched)
    assert summary(out) == [("big", 20, 1)]  # small must not jump ahead of next
    assert sched.running == () and not sched.kv.block_ids(sched.waiting[0])
    out = run_step(sched)
    assert summary(out) == [("next", 0, 12), ("small", 0, 4)]


def test_running_out_of_blocks_preempts_the_latest_arrival() -> None:
    sched = make_scheduler(num_blocks=8)  # 7 usable
    a = make_seq("a", num_prompt=12, max_tokens=5)
    b = make_seq("b", num_prompt=12, first_token=300, max_tokens=5, arrival=1)
    sched.add(a)
    sched.add(b)
    run_step(sched)
    assert (sched.kv.block_ids(a), sched.kv.block_ids(b)) == ([1, 2, 3], [4, 5, 6])
    out = run_step(sched)  # both cross into a fourth block; one is left
    assert summary(out) == [("a", 12, 1)] and out.preempted == (b,)
    assert sched.kv.block_ids(a) == [1, 2, 3, 7]
    assert b.status is SequenceStatus.WAITING and b.num_computed_tokens == 0
    assert b.num_preemptions == 1 and b.output_ids == [7] and sched.kv.block_ids(b) == []
    assert sched.kv.pool.free_block_ids() == [6, 5, 4]  # b's cached blocks, tail first
    for _ in range(3):
        assert summary(run_step(sched))[0][0] == "a"  # b's 4 blocks do not fit yet
    assert a.status is SequenceStatus.FINISHED
    out = run_step(sched)  # re-admitted: its prompt blocks come from the prefix cache
    assert summary(out) == [("b", 12, 1)] and out.chunks[0].samples
    assert sched.kv.block_ids(b) == [4, 5, 6, 7]
    assert b.num_cached_tokens == 0  # reported from the first admission only


def test_preemption_honours_priority_over_arrival() -> None:
    sched = make_scheduler(num_blocks=8)
    low = make_seq("low", num_prompt=12, priority=5, max_tokens=5)
    high = make_seq("high", num_prompt=12, first_token=300, priority=0, arrival=1)
    sched.add(low)
    sched.add(high)
    run_step(sched)
    out = run_step(sched)
    assert out.preempted == (low,) and summary(out) == [("high", 12, 1)]


def test_a_scheduled_decode_is_taken_back_when_preempted() -> None:
    sched = make_scheduler(num_blocks=6, max_num_batched_tokens=8, max_prefill_chunk=8)
    low = make_seq("low", num_prompt=4, priority=1, max_tokens=10)
    sched.add(low)
    run_step(sched)
    high = make_seq("high", num_prompt=16, first_token=300, priority=0)
    sched.add(high)
    assert summary(run_step(sched)) == [("low", 4, 1), ("high", 0, 7)]
    assert sched.kv.block_ids(low) == [1, 2] and sched.kv.block_ids(high) == [3, 4]
    out = run_step(sched)  # low's decode is scheduled first, then high's 8 need 2 of 1 free
    assert out.preempted == (low,)
    assert summary(out) == [("high", 7, 8)]  # budget refunded, low's chunk gone
    # low freed block 2 (partial: front of the queue) and block 1 (cached: back); high takes
    # block 5 first, free and unhashed right after its block 4 (consecutive ids), then block 2
    assert out.chunks[0].block_ids == (3, 4, 5, 2)
    assert sched.kv.pool.free_block_ids() == [1]
    assert low.status is SequenceStatus.WAITING and low.num_computed_tokens == 0


def test_waiting_sequences_are_admitted_by_priority_then_arrival() -> None:
    sched = make_scheduler(max_num_seqs=1)
    for name, priority, arrival in [("p2", 2, 0), ("p0-late", 0, 2), ("p0", 0, 1), ("p1", 1, 3)]:
        sched.add(make_seq(name, num_prompt=4, priority=priority, arrival=arrival, max_tokens=1))
    order = [run_step(sched).chunks[0].seq.request_id for _ in range(4)]
    assert order == ["p0", "p0-late", "p1", "p2"]


def test_a_better_waiting_sequence_preempts_the_worst_running_one() -> None:
    sched = make_scheduler(num_blocks=8)
    sched.add(make_seq("low1", num_prompt=10, priority=3, max_tokens=9))
    sched.add(make_seq("low2", num_prompt=10, first_token=300, priority=4, max_tokens=9))
    run_step(sched)  # six of seven blocks used
    sched.add(make_seq("equal", num_prompt=8, first_token=500, priority=4, arrival=1))
    out = run_step(sched)
    assert out.preempted == () and [s.request_id for s in sched.waiting] == ["equal"]
    sched.add(make_seq("urgent", num_prompt=8, first_token=600, priority=1, arrival=2))
    out = run_step(sched)
    assert [s.request_id for s in out.preempted] == ["low2"]
    assert summary(out) == [("low1", 11, 1), ("urgent", 0, 8)]
    # low2's partial block 6 is reused first; its cached blocks 4, 5 stay behind block 7
    assert sched.kv.block_ids(out.chunks[1].seq) == [6, 7]
    assert sched.kv.pool.free_block_ids() == [5, 4]
    # nobody worse than the sequence just preempted is admitted in the same step
    assert {s.request_id for s in sched.waiting} == {"equal", "low2"}


def test_aging_lets_a_low_priority_request_run_under_a_stream_of_high_ones() -> None:
    def first_step_of_low(aging_s: float) -> int | None:
        clock = FakeClock()
        sched = make_scheduler(max_num_seqs=1, clock=clock, aging_s=aging_s)
        sched.add(make_seq("low", num_prompt=4, priority=3, max_tokens=1))
        for step in range(30):
            sched.add(make_seq(f"high{step}", num_prompt=4, max_tokens=1, arrival=clock.now))
            out = run_step(sched)
            if out.chunks[0].seq.request_id == "low":
                return step
            clock.advance(1.0)
        return None

    assert first_step_of_low(aging_s=0.0) is None  # starved without aging
    assert first_step_of_low(aging_s=2.0) == 6  # 3 - floor(6 / 2) == 0, and it arrived first


def test_effective_priority_improves_by_one_every_aging_period() -> None:
    seq = make_seq(priority=4, arrival=10.0)
    assert priority_key(seq, 10.0, 5.0) == (4, 10.0)
    assert priority_key(seq, 14.9, 5.0) == (4, 10.0)
    assert priority_key(seq, 15.0, 5.0) == (3, 10.0)
    assert priority_key(seq, 40.0, 5.0) == (-2, 10.0)
    assert priority_key(seq, 40.0, 0.0) == (4, 10.0)


def test_abort_from_waiting_and_from_running() -> None:
    sched = make_scheduler(num_blocks=8, max_num_seqs=1)
    running = make_seq("run", num_prompt=6)
    waiting = make_seq("wait", num_prompt=6, first_token=300, arrival=1)
    sched.add(running)
    sched.add(waiting)
    run_step(sched)
    assert sched.abort("wait") is waiting and waiting.status is SequenceStatus.FINISHED
    assert sched.waiting == ()
    assert sched.abort("run") is running and running.status is SequenceStatus.FINISHED
    assert sched.running == () and sched.kv.num_free_blocks() == 7
    assert sched.abort("run") is None and not sched.has_work()


def test_update_skips_a_sequence_aborted_after_the_schedule() -> None:
    sched = make_scheduler()
    seq = make_seq("a", num_prompt=4)
    sched.add(seq)
    out = sched.schedule()
    assert (seq.num_computed_tokens, seq.num_inflight_tokens) == (4, 1)  # booked as launched
    sched.abort("a")
    assert sched.update(out, {"a": 7}) == []  # its surplus token is dropped
    assert seq.output_ids == [] and seq.status is SequenceStatus.FINISHED


def test_full_prefix_hit_schedules_one_token_and_a_copy() -> None:
    sched = make_scheduler(num_blocks=8)
    sched.add(make_seq("a", num_prompt=8, max_tokens=3))
    run_step(sched)
    b = make_seq("b", num_prompt=8, arrival=1)
    sched.add(b)
    out = run_step(sched)
    assert summary(out) == [("a", 8, 1), ("b", 7, 1)]
    assert out.copies == ((2, 4),) and out.chunks[1].block_ids == (1, 4)
    assert out.chunks[1].samples and b.num_cached_tokens == 7
    assert sched.kv.prefix_hit_rate() == 7 / 16


def test_a_prompt_larger_than_the_pool_is_rejected() -> None:
    sched = make_scheduler(num_blocks=8)  # 6 blocks of 4 per sequence
    with pytest.raises(ValueError, match="does not fit the KV cache"):
        sched.add(make_seq("huge", num_prompt=25))
    with pytest.raises(ValueError, match="does not fit"):
        sched.add(make_seq("empty", prompt=[]))
    fits = make_seq("fits", num_prompt=24, max_tokens=100)
    sched.add(fits)
    assert fits.max_tokens == 1  # clamped so it can always run alone
    with pytest.raises(ValueError, match="duplicate"):
        sched.add(make_seq("fits", num_prompt=4))


def test_a_sequence_alone_runs_to_its_clamped_length() -> None:
    sched = make_scheduler(num_blocks=4)  # 8 tokens per sequence
    seq = make_seq("a", num_prompt=5, max_tokens=100)
    sched.add(seq)
    assert seq.max_tokens == 4
    while sched.has_work():
        assert not run_step(sched).preempted
    assert seq.output_ids == [7, 7, 7, 7] and seq.num_computed_tokens == 8


def test_config_rejects_a_budget_smaller_than_the_batch() -> None:
    with pytest.raises(ValueError):
        SchedulerConfig(max_num_seqs=16, max_num_batched_tokens=8)
    with pytest.raises(ValueError):
        SchedulerConfig(max_prefill_chunk=0)


def test_a_lone_decode_on_a_prefix_hit_is_compacted_into_one_run() -> None:
    sched = make_scheduler(num_blocks=16)
    sched.add(make_seq("a", num_prompt=10, max_tokens=1))
    run_step(sched)  # a prefills, samples its only token and finishes; blocks 1, 2 cached
    b = make_seq("b", prompt=[*range(100, 108), 1, 2], max_tokens=4)
    c = make_seq("c", prompt=[*range(100, 108), 3, 4], max_tokens=4, arrival=1.0)
    sched.add(b)
    sched.add(c)
    out = run_step(sched)  # both admitted on the cached prefix: prefill steps copy nothing
    # b takes a's freed tail block 3, right after the prefix: one run. c's table is not.
    assert [ch.block_ids for ch in out.chunks] == [(1, 2, 3), (1, 2, 4)] and not out.copies
    out = run_step(sched)  # two decodes: a batch, not compacted
    assert not out.copies and [ch.block_ids for ch in out.chunks] == [(1, 2, 3), (1, 2, 4)]
    sched.finish(b)
    out = run_step(sched)  # c decodes alone: moved into a run of free blocks
    assert out.copies == ((1, 5), (2, 6), (4, 7))
    assert out.chunks[0].block_ids == (5, 6, 7)
    out = run_step(sched)  # its 13th token needs a block: the next id, still a run
    assert not out.copies and out.chunks[0].block_ids == (5, 6, 7, 8)


def state(seq: Sequence) -> tuple[int, int, list[int]]:
    return seq.num_computed_tokens, seq.num_inflight_tokens, seq.output_ids


def plan(out: SchedulerOutput[Sequence]) -> list[tuple[str, int, int, tuple[int, ...], bool, bool]]:
    """(request_id, start, num_tokens, block_ids, samples, input_inflight) per chunk."""
    return [
        (c.seq.request_id, c.start, c.num_tokens, c.block_ids, c.samples, c.input_inflight)
        for c in out.chunks
    ]


def hashed(sched: Scheduler) -> list[int]:
    return [b.block_id for b in sched.kv.pool.blocks if b.block_hash is not None]


def test_pipelined_steps_count_the_token_in_flight_until_update_brings_it() -> None:
    """As the pipelined engine runs: step k is scheduled (launched) before step k-1's sampled
    values arrive, so a decode's input is a token still in flight."""
    sched = make_scheduler(num_blocks=16)
    a = make_seq("a", num_prompt=7, max_tokens=4)
    sched.add(a)
    out1 = sched.schedule()
    assert plan(out1) == [("a", 0, 7, (1, 2), True, False)]
    assert state(a) == (7, 1, [])
    b = make_seq("b", num_prompt=4, first_token=200, max_tokens=2)
    sched.add(b)
    out2 = sched.schedule()  # a's input (position 7) is its token from out1, in flight
    assert plan(out2) == [("a", 7, 1, (1, 2), True, True), ("b", 0, 4, (3,), True, False)]
    assert state(a) == (8, 2, []) and state(b) == (4, 1, [])
    assert sched.update(out1, {"a": 50}) == [a]
    assert state(a) == (8, 1, [50])
    assert hashed(sched) == [1]  # out1 wrote positions 0-6: block 2 waits for position 7
    out3 = sched.schedule()  # position 8, where a's in-flight token goes, needs a third block
    assert plan(out3) == [("a", 8, 1, (1, 2, 4), True, True), ("b", 4, 1, (3, 5), True, True)]
    assert state(a) == (9, 2, [50]) and state(b) == (5, 2, [])
    assert sched.update(out2, {"a": 51, "b": 60}) == [a, b]
    assert state(a) == (9, 1, [50, 51]) and state(b) == (5, 1, [60])
    assert hashed(sched) == [1, 2, 3]
    first = block_hash(None, [100, 101, 102, 103], NAMESPACE)
    assert sched.kv.pool.blocks[2].block_hash == block_hash(first, [104, 105, 106, 50], NAMESPACE)
    out4 = sched.schedule()  # b's two tokens are sampled or in flight: it is done
    assert plan(out4) == [("a", 9, 1, (1, 2, 4), True, True)]
    assert state(a) == (10, 2, [50, 51]) and state(b) == (5, 1, [60])
    assert sched.update(out3, {"a": 52, "b": 61}) == [a, b]
    sched.finish(b)  # the engine's length check
    assert sched.schedule().is_empty  # so is a: its fourth token is in flight
    assert sched.update(out4, {"a": 53}) == [a]
    assert state(a) == (10, 0, [50, 51, 52, 53]) and state(b) == (5, 0, [60, 61])
    assert a.all_ids == [*range(100, 107), 50, 51, 52, 53]
    assert hashed(sched) == [1, 2, 3]  # a's position 10 was never computed: block 4 waits


def test_a_sequence_preempted_with_a_token_in_flight_gets_it_then_recomputes() -> None:
    sched = make_scheduler(num_blocks=8)  # 7 usable blocks
    a = make_seq("a", num_prompt=12, max_tokens=5)
    b = make_seq("b", num_prompt=12, first_token=300, max_tokens=5, arrival=1)
    sched.add(a)
    sched.add(b)
    out1 = sched.schedule()
    assert plan(out1) == [
        ("a", 0, 12, (1, 2, 3), True, False),
        ("b", 0, 12, (4, 5, 6), True, False),
    ]
    out2 = sched.schedule()  # both in-flight tokens go to position 12: one fourth block left
    assert out2.preempted == (b,) and plan(out2) == [("a", 12, 1, (1, 2, 3, 7), True, True)]
    assert b.status is SequenceStatus.WAITING and sched.kv.block_ids(b) == []
    assert state(b) == (0, 1, [])  # its token still arrives
    sched.finish(a)  # a is aborted: the pool is free again
    assert sched.schedule().is_empty  # b's recompute needs its in-flight token's value
    assert sched.update(out1, {"a": 7, "b": 8}) == [b]  # a's token is surplus
    assert state(b) == (0, 0, [8]) and b.status is SequenceStatus.WAITING
    assert hashed(sched) == []  # nothing hashed for a sequence no longer running
    out3 = sched.schedule()  # b recomputes its 13 known tokens and samples its second
    assert plan(out3) == [("b", 0, 13, (1, 2, 3, 4), True, False)]
    assert state(b) == (13, 1, [8]) and b.num_preemptions == 1
    assert sched.update(out2, {"a": 9}) == []
    assert sched.update(out3, {"b": 10}) == [b]
    assert state(b) == (13, 0, [8, 10]) and b.all_ids == [*range(300, 312), 8, 10]
    assert hashed(sched) == [1, 2, 3]

"""A scheduled step through the channel's JSON and back: the follower's plan equals rank 0's."""

from __future__ import annotations

import json

import pytest

from mlx_manager.distributed.step_codec import MirrorSequence, StepDecoder, encode_step
from mlx_manager.engine.sequence import Sequence
from mlx_manager.runner.step_plan import ScheduledChunk, SchedulerOutput


def _seq(request_id: str, prompt: list[int], output: tuple[int, ...] = ()) -> Sequence:
    seq = Sequence(request_id, prompt, max_tokens=16)
    for token in output:
        seq.append_token(token)
    return seq


def _roundtrip(
    decoder: StepDecoder, output: SchedulerOutput[Sequence]
) -> SchedulerOutput[MirrorSequence]:
    return decoder.decode(json.loads(json.dumps(encode_step(output))))


def test_prefill_then_decode_reach_the_follower_with_their_inputs_and_tables() -> None:
    decoder = StepDecoder()
    a = _seq("a", [5, 6, 7, 8, 9])
    prefill = SchedulerOutput((ScheduledChunk(a, 0, 5, (3, 4), True),), ((1, 2),), ())
    plan = _roundtrip(decoder, prefill)
    (chunk,) = plan.chunks
    assert (chunk.seq.request_id, chunk.start, chunk.num_tokens) == ("a", 0, 5)
    assert chunk.seq.all_ids == [5, 6, 7, 8, 9] and chunk.block_ids == (3, 4) and chunk.samples
    assert plan.copies == ((1, 2),) and not chunk.input_inflight
    a.append_token(42)  # rank 0 sampled it and finished the step before sending the next
    decode = SchedulerOutput((ScheduledChunk(a, 5, 1, (3, 4), True, True),), (), ())
    (chunk,) = _roundtrip(decoder, decode).chunks
    assert chunk.seq.all_ids[5:6] == [42] and decoder.blocks_held() == 2


def test_an_input_still_on_the_device_cannot_be_sent() -> None:
    a = _seq("a", [5, 6])
    decode = SchedulerOutput((ScheduledChunk(a, 2, 1, (3,), True, True),), (), ())
    with pytest.raises(ValueError, match="not known yet"):
        encode_step(decode)


def test_a_prefix_hit_starts_past_the_tokens_sent_and_ends_drop_the_sequence() -> None:
    decoder = StepDecoder()
    b = _seq("b", list(range(40)))
    hit = SchedulerOutput((ScheduledChunk(b, 32, 8, (7, 9, 11), True),), ((9, 11),), ())
    (chunk,) = _roundtrip(decoder, hit).chunks
    assert chunk.seq.all_ids[32:40] == list(range(32, 40)) and len(chunk.seq.all_ids) == 40
    c = _seq("c", [1, 2])
    two = SchedulerOutput((ScheduledChunk(c, 0, 2, (7, 12), True),), (), (b,))
    plan = _roundtrip(decoder, two)
    assert [s.request_id for s in plan.preempted] == ["b"]
    assert decoder.blocks_held() == 2  # b's table went with its preemption
    decoder.end(["b", "c"])
    assert decoder.sequences == {} and decoder.blocks_held() == 0

"""The paged engine with a real (tiny, random-weight) model: batching, memory, preemption,
priorities, chunked prefill and copy-on-write all produce what each request gives alone."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten
from mlx_lm.generate import generate_step
from mlx_lm.models import llama
from mlx_lm.sample_utils import make_logits_processors

from mlx_manager.config import EngineConfig, load_settings
from mlx_manager.engine.paged_engine import PagedModelEngine
from mlx_manager.engine.request import EngineRequest
from mlx_manager.kv.paged_storage import PagedLayerCache, StepMeta, probe_kv_layout
from mlx_manager.models.loaded import LoadedModel, load_text_model
from mlx_manager.models.sources import ModelSpec
from mlx_manager.runner.sampling import PENALTY_WINDOW
from mlx_manager.types import FinishReason, GenerationEvent, SamplingParams

GREEDY = SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def tiny(tiny_model_dirs: dict[str, Path]) -> LoadedModel:
    path = tiny_model_dirs["llama"]
    return load_text_model(ModelSpec("tiny", str(path)), path, None, 0)


@pytest.fixture(scope="module")
def mixing(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> LoadedModel:
    """The tiny llama with untied N(0, 0.1) weights. The tiny model's tied embeddings mostly
    echo its last input token; this one's tokens depend on the context, so a wrong K/V read
    (a missing, extra or misplaced token) changes them."""
    src, path = tiny_model_dirs["llama"], tmp_path_factory.mktemp("mixing")
    for file in src.iterdir():
        if file.is_file() and file.name not in ("config.json", "model.safetensors"):
            shutil.copy(file, path / file.name)
    config = {**json.loads((src / "config.json").read_text()), "tie_word_embeddings": False}
    (path / "config.json").write_text(json.dumps(config))
    mx.random.seed(1)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    weights = {
        name: mx.random.normal(value.shape) * 0.1 if value.ndim > 1 else value
        for name, value in tree_flatten(model.parameters())
    }
    mx.save_safetensors(str(path / "model.safetensors"), weights)
    return load_text_model(ModelSpec("tiny", str(path)), path, None, 0)


def engine_config(**overrides: object) -> EngineConfig:
    return load_settings({"block_size": 16, "kv_cache_gb": 0.01, **overrides}).engine()


def make_engine(
    model: LoadedModel, blocks: int | None = None, **overrides: object
) -> PagedModelEngine:
    layout = probe_kv_layout(model.model)
    assert layout is not None
    config = engine_config(**overrides)
    if blocks is not None:  # exactly `blocks` usable blocks
        block_bytes = config.block_size * layout.bytes_per_token()
        config = config.model_copy(update={"kv_cache_gb": blocks * block_bytes / 1e9 + 1e-12})
    return PagedModelEngine(model, layout, config)


def prompt(seed: int, length: int) -> tuple[int, ...]:
    rng = random.Random(seed)
    return tuple(rng.randrange(10, 400) for _ in range(length))


def request(
    rid: str, ids: tuple[int, ...], max_tokens: int = 8, priority: int = 0
) -> EngineRequest:
    return EngineRequest(rid, "tiny", ids, GREEDY, max_tokens, priority)


def run(
    engine: PagedModelEngine, requests: list[EngineRequest], on_step=None
) -> dict[str, list[GenerationEvent]]:  # type: ignore[no-untyped-def]
    for r in requests:
        engine.add(r)
    events: dict[str, list[GenerationEvent]] = {r.request_id: [] for r in requests}
    for _ in range(10_000):
        if not engine.has_work():
            break
        for event in engine.step():
            events[event.request_id].append(event)
        if on_step:
            on_step(engine)
    assert not engine.has_work()
    return events


def tokens(events: list[GenerationEvent]) -> list[int]:
    return [t for e in events for t in e.token_ids]


def alone(model: LoadedModel, req: EngineRequest) -> list[int]:
    return tokens(run(make_engine(model), [req])[req.request_id])


def fragment(engine: PagedModelEngine, n: int) -> None:
    """Hold 2n blocks and free every other one: the free queue then starts with n blocks no
    two of which are neighbours, so a new sequence's blocks are no run of ids."""
    pool = engine.kv.pool
    pool.free_blocks(pool.get_new_blocks(2 * n)[::2])


def record_paths(engine: PagedModelEngine) -> list[bool]:
    """For each single-sequence forward from now on: were its K/V slices (True) or gathered?"""
    paths: list[bool] = []
    views = engine.storage.views

    def spy(meta: StepMeta) -> list[PagedLayerCache]:
        if meta.mask is None:
            paths.append(isinstance(meta.write, int))
        return views(meta)

    engine.storage.views = spy  # type: ignore[method-assign]
    return paths


def test_alone_matches_mlx_lm_generate_step(mixing: LoadedModel) -> None:
    req = request("m", prompt(12, 30), max_tokens=24)
    engine = make_engine(mixing)
    paths = record_paths(engine)
    events = run(engine, [req])["m"]
    assert paths and all(paths)  # a fresh pool: one run of blocks, read as slices
    got = tokens(events)
    steps = generate_step(mx.array(req.prompt_ids), mixing.model, max_tokens=24)
    reference = [token for token, _ in steps]
    assert got == reference[: len(got)]
    assert len(got) == 24 or events[-1].finish_reason is FinishReason.STOP


def test_scattered_blocks_are_gathered_then_compacted_and_match_a_run(
    mixing: LoadedModel,
) -> None:
    req = request("r", prompt(11, 40), max_tokens=40)  # 80 tokens: 5 blocks of 16
    engine = make_engine(mixing, prefill_step_size=16)
    paths = record_paths(engine)
    contiguous = tokens(run(engine, [req])["r"])
    assert paths and all(paths)
    engine = make_engine(mixing, prefill_step_size=16)
    fragment(engine, 8)
    paths = record_paths(engine)
    scattered = tokens(run(engine, [req])["r"])
    # The first chunk (one block) is a run; the next chunks are gathered; at its first
    # decode the lone sequence moves into a run of free blocks and decodes on slices.
    assert paths[:3] == [True, False, False] and all(paths[3:])
    assert scattered == contiguous == alone(mixing, req)


def test_batch_matches_alone(mixing: LoadedModel) -> None:
    reqs = [request(f"r{i}", prompt(i, 5 + 7 * i), max_tokens=6 + i) for i in range(8)]
    together = run(make_engine(mixing), reqs)
    for r in reqs:
        assert tokens(together[r.request_id]) == alone(mixing, r)
        assert together[r.request_id][-1].finish_reason in (FinishReason.LENGTH, FinishReason.STOP)


def test_admits_what_the_budget_allows_and_queues_the_rest(tiny: LoadedModel) -> None:
    # 4 x 512-token prompts take 4 x 32 blocks of 16; 2 more blocks let them decode a little.
    engine = make_engine(tiny, blocks=4 * 32 + 2, max_num_seqs=64)
    reqs = [request(f"r{i}", prompt(100 + i, 512), max_tokens=4) for i in range(6)]
    seen: list[tuple[int, int, int, int]] = []

    def watch(e: PagedModelEngine) -> None:
        seen.append((e.running, e.waiting, e.blocks_used, e.kv.num_free_blocks()))

    events = run(engine, reqs, watch)
    running, waiting, used, _ = seen[0]
    assert (running, waiting) == (4, 2)
    assert used == 4 * 32
    assert max(s[0] for s in seen) == 4
    assert all(ev[-1].finish_reason is FinishReason.LENGTH for ev in events.values())
    # memory in use is exactly blocks in use x block bytes
    assert engine.storage.block_bytes == 16 * engine.storage.layout.bytes_per_token()
    assert engine.blocks_used == 0 and engine.kv.num_free_blocks() == 4 * 32 + 2


def test_preemption_recomputes_and_matches_alone(mixing: LoadedModel) -> None:
    reqs = [request(f"p{i}", prompt(200 + i, 40), max_tokens=30) for i in range(3)]
    engine = make_engine(mixing, blocks=9)
    preempted: set[str] = set()
    in_flight_when_preempted: list[int] = []
    preempt = engine.scheduler._preempt

    def spy(seq, step):  # type: ignore[no-untyped-def]
        in_flight_when_preempted.append(seq.num_inflight_tokens)
        preempt(seq, step)

    engine.scheduler._preempt = spy  # type: ignore[method-assign]

    def watch(e: PagedModelEngine) -> None:
        preempted.update(s.request_id for s in e.scheduler.running if s.num_preemptions)
        preempted.update(s.request_id for s in e.scheduler.waiting if s.num_preemptions)

    together = run(engine, reqs, watch)
    assert preempted, "the pool is too small for all three: someone must be preempted"
    # pipelined: a decoding sequence is preempted while its last token is still in flight
    assert 1 in in_flight_when_preempted
    for r in reqs:
        assert tokens(together[r.request_id]) == alone(mixing, r)


def test_a_prefix_hit_joins_decodes_fed_from_the_device_and_matches_alone(
    mixing: LoadedModel,
) -> None:
    """A fully cached prompt starts with a one-token chunk of a known token; it shares the
    decode forward with streams whose input tokens are still in flight on the device."""
    engine = make_engine(mixing)
    shared = prompt(41, 32)  # exactly 2 blocks
    first = request("a", shared, max_tokens=4)
    run(engine, [first])
    streams = [request(f"s{i}", prompt(42 + i, 10 + 5 * i), max_tokens=12) for i in range(2)]
    for r in streams:
        engine.add(r)
    events: dict[str, list[GenerationEvent]] = {r.request_id: [] for r in [*streams, first]}
    for _ in range(4):
        for event in engine.step():
            events[event.request_id].append(event)
    hit = request("hit", shared, max_tokens=8)
    events["hit"] = []
    engine.add(hit)
    mixed: list[bool] = []
    input_ids = engine.runner._input_ids

    def spy(chunks, length):  # type: ignore[no-untyped-def]
        flags = {c.input_inflight for c in chunks}
        mixed.append(len(flags) == 2)
        return input_ids(chunks, length)

    engine.runner._input_ids = spy  # type: ignore[method-assign]
    while engine.has_work():
        for event in engine.step():
            events[event.request_id].append(event)
    assert any(mixed), "the hit's first chunk did not share a forward with in-flight decodes"
    usage = events["hit"][-1].usage
    assert usage is not None and usage.cached_tokens == 31
    for r in [*streams, hit]:
        assert tokens(events[r.request_id]) == alone(mixing, r)


def test_penalties_see_every_sampled_token_alone_and_in_a_batch(mixing: LoadedModel) -> None:
    """Logits processors read the history: the engine waits for the values in flight."""
    params = SamplingParams(temperature=0.0, presence_penalty=1.5, repetition_penalty=1.3)
    req = EngineRequest("pen", "tiny", prompt(51, 12), params, 16)
    processors = make_logits_processors(
        repetition_penalty=1.3, presence_penalty=1.5, presence_context_size=PENALTY_WINDOW
    )
    steps = generate_step(
        mx.array(req.prompt_ids), mixing.model, max_tokens=16, logits_processors=processors
    )
    reference = [token for token, _ in steps]
    got = alone(mixing, req)
    assert got == reference[: len(got)] and len(got) >= 8
    others = [request(f"o{i}", prompt(52 + i, 9), max_tokens=12) for i in range(2)]
    together = run(make_engine(mixing), [others[0], req, others[1]])
    assert tokens(together["pen"]) == got
    for r in others:
        assert tokens(together[r.request_id]) == alone(mixing, r)


def test_priority_runs_first(tiny: LoadedModel) -> None:
    engine = make_engine(tiny, max_num_seqs=1)
    order: list[str] = []
    reqs = [request("low", prompt(1, 8), priority=5), request("high", prompt(2, 8), priority=-5)]
    for r in reqs:
        engine.add(r)
    while engine.has_work():
        order += [e.request_id for e in engine.step() if e.finished]
    assert order == ["high", "low"]


def test_the_last_event_carries_the_requests_own_timings(tiny: LoadedModel) -> None:
    """Queued (handed to the engine), first scheduled, first token, finished: in order, on
    the last event only; the second of two requests with one slot waits for the first."""
    engine = make_engine(tiny, max_num_seqs=1)
    first, second = request("a", prompt(3, 40), max_tokens=3), request("b", prompt(4, 40))
    events = run(engine, [first, second])
    ends = {}
    for rid, evs in events.items():
        assert all(e.timings is None for e in evs[:-1])
        timings = evs[-1].timings
        assert timings is not None
        assert timings.scheduled is not None and timings.first_token is not None
        assert timings.finished is not None
        assert timings.queued <= timings.scheduled <= timings.first_token <= timings.finished
        ends[rid] = timings
    assert ends["b"].scheduled >= ends["a"].finished  # type: ignore[operator]


def test_chunked_prefill_matches_whole_prefill(mixing: LoadedModel) -> None:
    long_request = request("long", prompt(7, 300), max_tokens=8)
    chunked = run(make_engine(mixing, prefill_step_size=64), [long_request])["long"]
    assert tokens(chunked) == alone(mixing, long_request)


def test_prefix_hit_and_copy_on_write_match(mixing: LoadedModel) -> None:
    engine = make_engine(mixing)
    shared = prompt(9, 64)  # exactly 4 blocks: the second request hits every block
    first = tokens(run(engine, [request("a", shared)])["a"])
    second_events = run(engine, [request("b", shared)])["b"]
    assert tokens(second_events) == first
    usage = second_events[-1].usage
    assert usage is not None and usage.cached_tokens == 63
    assert engine.kv.prefix_hit_rate() > 0


def test_a_lone_decode_after_a_prefix_hit_is_compacted_and_matches_alone(
    mixing: LoadedModel,
) -> None:
    """The second request adopts the first one's 3 cached prefix blocks; the block after them
    holds the first one's own tokens, so its prefill is gathered. Decoding alone, it moves
    into one run of blocks, and the prefix stays cached for a third request."""
    engine = make_engine(mixing)
    shared = prompt(21, 48)
    a, b = request("a", shared + prompt(22, 20)), request("b", shared + prompt(23, 20))
    run(engine, [a])
    paths = record_paths(engine)
    events = run(engine, [b])["b"]
    usage = events[-1].usage
    assert usage is not None and usage.cached_tokens == 48
    assert paths[0] is False and len(paths) > 2 and all(paths[1:])
    assert tokens(events) == alone(mixing, b)
    c = request("c", shared + prompt(24, 20))
    usage = run(engine, [c])["c"][-1].usage
    assert usage is not None and usage.cached_tokens == 48


def count_launches(engine: PagedModelEngine) -> list[int]:
    """One entry per forward step the runner launches from now on."""
    launches: list[int] = []
    launch = engine.runner.launch

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        launches.append(1)
        return launch(*args, **kwargs)

    engine.runner.launch = spy  # type: ignore[method-assign]
    return launches


def test_a_lone_first_token_leaves_before_the_next_step_is_built(mixing: LoadedModel) -> None:
    engine = make_engine(mixing)
    launches = count_launches(engine)
    req = request("a", prompt(31, 20), max_tokens=4)
    engine.add(req)
    assert engine.step() == [] and len(launches) == 1  # the prefill, launched
    events = engine.step()  # the first token's value is known and nothing else launched
    (seq,) = engine.scheduler.running
    assert len(seq.output_ids) == 1 and seq.num_inflight_tokens == 0 and len(launches) == 1
    while engine.has_work():  # it decodes on, pipelined again
        events += engine.step()
    assert len(launches) >= 4
    assert tokens(events) == alone(mixing, req)


def test_a_first_token_beside_running_streams_stays_pipelined(mixing: LoadedModel) -> None:
    engine = make_engine(mixing)
    engine.add(request("a", prompt(32, 20), max_tokens=40))
    while not any(e.token_ids for e in engine.step()):
        pass
    launches = count_launches(engine)
    engine.add(request("b", prompt(33, 20), max_tokens=4))
    b = next(s for s in engine.scheduler.waiting if s.request_id == "b")
    while not b.output_ids:
        before = len(launches)
        engine.step()
    assert len(launches) == before + 1  # the step that gave b's first token launched one more


def test_prompt_larger_than_pool_is_rejected(tiny: LoadedModel) -> None:
    from mlx_manager.errors import InvalidRequest

    engine = make_engine(tiny, blocks=4)
    with pytest.raises(InvalidRequest):
        engine.add(request("big", prompt(3, 200)))


def test_prefill_chunks_of_similar_length_share_a_forward() -> None:
    from mlx_manager.engine.sequence import Sequence
    from mlx_manager.runner.batch_runner import group_prefills
    from mlx_manager.runner.step_plan import ScheduledChunk

    def chunk(n: int) -> ScheduledChunk:
        return ScheduledChunk(Sequence(f"s{n}", list(range(n)), 4), 0, n, (1,), True)

    groups = group_prefills([chunk(n) for n in (100, 512, 500, 90, 400, 20)])
    assert [[c.num_tokens for c in g] for g in groups] == [[512, 500, 400], [100, 90], [20]]

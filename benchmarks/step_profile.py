"""Batch-1 decode step, in-process: the paged engine against mlx-lm's generate_step.

    python benchmarks/step_profile.py --model DIR [--steps 200] [--rounds 3] [--no-profile]
        [--graph-only] [--batch B]

Both sides decode the same greedy prompt for the same number of steps; rounds alternate
between them (the machine's load drifts) and the medians are reported:

- ms/step: wall time per decode step (the paged engine's `step()`, which launches step k and
  collects step k-1; mlx-lm's `generate_step`, whose loop does the same).
- build ms/step: host time spent building the step's lazy graph in Python, i.e. the step
  minus the time inside `mx.async_eval` and minus the wait for the previous step's token (the
  paged engine's `runner.collect`; `y.item()` in a copy of generate_step's decode loop for
  mlx-lm). On a GPU this and the launch of the graph's kernels bound batch-1 decode; on the CPU
  backend `async_eval` itself blocks on the compute (it bounds the tasks in flight), so only the
  build part can be told apart from the compute there.
- graph ops: primitives in one decode step's graph, by kind (`mx.export_to_dot`).
- graph-only ms: host time to build one decode step's graph with nothing evaluated at all
  (no compute competing for the cores), the host cost that the CPU backend hides.

`--reuse-prompt` gives the paged engine the same prompt every round, as a server sees a repeated
request: its first block comes from the prefix cache and its own blocks lie elsewhere, so it
decodes after a compaction (`KVCacheManager.compact`), or on the gather path with
`--no-compact`. Then, unless --no-profile, cProfile of the paged engine's steps
(tottime). `--batch B`
times the paged engine alone decoding B sequences at once.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.generate import generate_step, generation_stream
from mlx_lm.models.cache import make_prompt_cache

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.engine_build import greedy, load_server_model, paged_engine, request
from benchmarks.lib.prompts import random_ids
from benchmarks.lib.stats import Stopwatch, median_text
from mlx_manager.engine.paged_engine import PagedModelEngine
from mlx_manager.kv.manager import KVCacheManager
from mlx_manager.runner.request_sampler import RequestSampler

GREEDY = greedy()
Prompts = list[tuple[int, ...]]


def prompt(seed: int, length: int) -> tuple[int, ...]:
    """`length` random token ids, the same for the same seed (small enough for any vocabulary
    over 10k tokens)."""
    return tuple(random_ids(seed, length, 10, 10_000))


@contextmanager
def timed_async_eval() -> Iterator[Stopwatch]:
    """Time every `mx.async_eval` call (module attribute: callers look it up at call time)."""
    clock, original = Stopwatch(), mx.async_eval
    mx.async_eval = clock.wrap(original)
    try:
        yield clock
    finally:
        mx.async_eval = original


def add_all(engine: PagedModelEngine, tag: str, prompts: Prompts, max_tokens: int) -> None:
    for n, ids in enumerate(prompts):
        engine.add(request(f"{tag}-{n}", ids, GREEDY, max_tokens))


def paged_round(
    engine: PagedModelEngine, rid: str, prompts: Prompts, steps: int, profiler: Any = None
) -> tuple[float, float]:
    """(ms/step, build ms/step) of `steps` decode steps of a batch of `prompts`, after their
    prefill."""
    add_all(engine, rid, prompts, steps + 4)
    engine.step()  # prefill
    engine.step()  # first decode
    runner, waits = engine.runner, Stopwatch()
    runner.collect = waits.wrap(runner.collect)  # type: ignore[method-assign]
    try:
        with timed_async_eval() as launches:
            if profiler is not None:
                profiler.enable()
            start = time.perf_counter()
            for _ in range(steps):
                engine.step()
            elapsed = time.perf_counter() - start
            if profiler is not None:
                profiler.disable()
    finally:
        del runner.collect
    while engine.has_work():
        engine.step()
    build = elapsed - waits.seconds - launches.seconds
    return 1000 * elapsed / steps, 1000 * build / steps


def mlx_lm_round(model: Any, ids: tuple[int, ...], steps: int) -> float:
    """ms/step of mlx-lm's own generate_step (greedy), decode steps only."""
    gen = generate_step(mx.array(ids), model, max_tokens=steps + 2)
    next(gen)
    start = time.perf_counter()
    for _ in range(steps):
        next(gen)
    return 1000 * (time.perf_counter() - start) / steps


class MlxLmLoop:
    """generate_step's decode loop, copied (greedy sampler), so its parts can be timed."""

    def __init__(self, model: Any, ids: tuple[int, ...]) -> None:
        self.model = model
        self.cache = make_prompt_cache(model)
        with mx.stream(generation_stream):
            model(mx.array(ids[:-1])[None], cache=self.cache)
            mx.eval([c.state for c in self.cache])
        self.y, _ = self.step(mx.array(ids[-1:]))
        mx.eval(self.y)

    def step(self, tokens: mx.array) -> tuple[mx.array, mx.array]:
        with mx.stream(generation_stream):
            logits = self.model(tokens[None], cache=self.cache)[:, -1, :]
            logprobs = logits - mx.logsumexp(logits, keepdims=True)
            return mx.argmax(logprobs, axis=-1), logprobs.squeeze(0)

    def build_ms(self, steps: int) -> float:
        waits = Stopwatch()
        item = waits.wrap(lambda y: y.item())
        with timed_async_eval() as launches:
            start = time.perf_counter()
            y = self.y
            for _ in range(steps):
                next_y, next_logprobs = self.step(y)
                mx.async_eval(next_y, next_logprobs)
                item(y)
                y = next_y
            elapsed = time.perf_counter() - start
        self.y = y
        return 1000 * (elapsed - waits.seconds - launches.seconds) / steps


def paged_graph_ms(
    engine: PagedModelEngine, vocab: int, prompts: Prompts, steps: int, rounds: int
) -> list[float]:
    """Host ms to build one decode step (the runner's `launch`) with nothing evaluated, so
    that no compute competes with it, per round.

    Each build starts from the same evaluated state: the pools' arrays are restored through
    aliases (`copy.copy` shares an array's data and adds no op) and each launch runs on a
    shallow copy of the runner as it stood (its last step's token ids feed the next step).
    The samplers are greedy over `vocab` tokens, as the engine's own for these requests.
    Leaves the engine unusable.
    """
    add_all(engine, "graph", prompts, steps + 8)
    for _ in range(3):
        engine.step()
    output = engine.scheduler.schedule()
    samplers = {c.seq.request_id: RequestSampler(GREEDY, vocab) for c in output.chunks}
    storage = engine.storage
    mx.eval(storage.keys, storage.values)
    mx.synchronize()  # the launched step's tokens too
    keys, values, runner = list(storage.keys), list(storage.values), copy.copy(engine.runner)
    original, times = mx.async_eval, []
    mx.async_eval = lambda *_: None
    try:
        for _ in range(rounds):
            elapsed = 0.0
            for _ in range(steps):
                storage.keys[:] = [copy.copy(k) for k in keys]
                storage.values[:] = [copy.copy(v) for v in values]
                fresh = copy.copy(runner)
                start = time.perf_counter()
                fresh.launch(output, samplers)
                elapsed += time.perf_counter() - start
            times.append(1000 * elapsed / steps)
    finally:
        mx.async_eval = original
    return times


def mlx_lm_graph_ms(model: Any, ids: tuple[int, ...], steps: int, rounds: int) -> list[float]:
    """Host ms to build one step of generate_step's decode loop, nothing evaluated, each
    from the same evaluated cache, per round."""
    loop = MlxLmLoop(model, ids)
    saved = [(c.keys, c.values, c.offset) for c in loop.cache]
    times = []
    for _ in range(rounds):
        elapsed = 0.0
        for _ in range(steps):
            for c, (k, v, offset) in zip(loop.cache, saved, strict=True):
                c.keys, c.values, c.offset = copy.copy(k), copy.copy(v), offset
            start = time.perf_counter()
            loop.step(loop.y)
            elapsed += time.perf_counter() - start
        times.append(1000 * elapsed / steps)
    return times


def count_ops(*arrays: mx.array) -> Counter[str]:
    with tempfile.TemporaryDirectory() as tmp:
        dot = Path(tmp) / "graph.dot"
        mx.export_to_dot(str(dot), *arrays)
        return Counter(re.findall(r'label ="([^"]+)", shape=rectangle', dot.read_text()))


def paged_ops(engine: PagedModelEngine, prompts: Prompts) -> Counter[str]:
    """Primitives of one decode step of the paged engine (pool writes included)."""
    add_all(engine, "ops", prompts, 8)
    engine.step()
    engine.step()
    captured: list[Counter[str]] = []
    original = mx.async_eval

    def capture(*arrays: Any) -> None:
        flat = [a for x in arrays for a in (x if isinstance(x, list) else [x])]
        if not captured:
            captured.append(count_ops(*flat))
        original(*arrays)

    mx.async_eval = capture
    try:
        engine.step()
    finally:
        mx.async_eval = original
    while engine.has_work():
        engine.step()
    return captured[0]


def format_ops(ops: Counter[str]) -> str:
    return f"{sum(ops.values())} ({', '.join(f'{k} {v}' for k, v in ops.most_common())})"


class Bench:
    """The loaded model, its paged engine and the prompts of each round."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loaded = load_server_model(Path(args.model))
        self.model = self.loaded.model
        self.engine = paged_engine(self.loaded, kv_cache_gb=args.kv_gb)

    def ids(self, n: int) -> tuple[int, ...]:  # a new prompt each round: no prefix-cache hits
        return prompt(1000 * n, self.args.prompt_len)

    def batch(self, n: int) -> Prompts:
        seed = 0 if self.args.reuse_prompt else 1000 * n
        return [prompt(seed + i, self.args.prompt_len) for i in range(self.args.batch)]

    def sides(self) -> list[tuple[str, Callable[[int], tuple[float, ...]]]]:
        """What each round times: the paged engine, mlx-lm, mlx-lm's loop's build time."""
        args, model = self.args, self.model
        runs: list[tuple[str, Callable[[int], tuple[float, ...]]]] = [
            ("paged", lambda n: paged_round(self.engine, f"r{n}", self.batch(n), args.steps)),
        ]
        if not args.no_mlx_lm:
            runs += [
                ("mlx_lm", lambda n: (mlx_lm_round(model, self.ids(n), args.steps),)),
                ("mlx_lm_loop", lambda n: (MlxLmLoop(model, self.ids(n)).build_ms(args.steps),)),
            ]
        return runs


def timed_rounds(bench: Bench) -> dict[str, list[float]]:
    """Warm-ups, then --rounds rounds alternating the sides (none with --graph-only)."""
    args = bench.args
    paged_round(bench.engine, "warm", bench.batch(-1), 16)  # every code path once
    if not args.no_mlx_lm:
        mlx_lm_round(bench.model, bench.ids(-1), 16)
    sides: dict[str, list[float]] = {}
    for n in range(0 if args.graph_only else args.rounds):
        for name, fn in bench.sides():
            values = fn(n)
            sides.setdefault(name, []).append(values[0])
            if len(values) > 1:
                sides.setdefault(f"{name}_build", []).append(values[1])
    return sides


def print_rounds(bench: Bench, sides: dict[str, list[float]]) -> None:
    if sides:
        print(f"paged engine  ms/step        {median_text(sides['paged'])}")
        print(f"paged engine  build ms/step  {median_text(sides['paged_build'])}")
    print(f"paged engine  graph ops      {format_ops(paged_ops(bench.engine, bench.batch(-2)))}")
    if bench.args.no_mlx_lm:
        return
    loop = MlxLmLoop(bench.model, bench.ids(-2))
    if sides:
        print(f"mlx-lm        ms/step        {median_text(sides['mlx_lm'])}")
        print(f"mlx-lm        build ms/step  {median_text(sides['mlx_lm_loop'])}")
    print(f"mlx-lm        graph ops      {format_ops(count_ops(*loop.step(loop.y)))}")
    if sides:
        ratio = statistics.median(sides["mlx_lm"]) / statistics.median(sides["paged"])
        print(f"paged speed / mlx-lm speed   {ratio:.2f}")


def print_graph_only(bench: Bench) -> None:
    """Last: graph building alone, nothing evaluated (leaves the engine unusable)."""
    args, vocab = bench.args, len(bench.loaded.tokenizer)
    graph = paged_graph_ms(bench.engine, vocab, bench.batch(-4), args.steps, args.rounds)
    print(f"paged engine  graph-only ms  {median_text(graph)}")
    if not args.no_mlx_lm:
        graph = mlx_lm_graph_ms(bench.model, bench.ids(-4), args.steps, args.rounds)
        print(f"mlx-lm        graph-only ms  {median_text(graph)}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-len", type=int, default=54)
    parser.add_argument("--batch", type=int, default=1, help="paged engine only: decode batch")
    parser.add_argument("--kv-gb", type=float, default=1.0)
    parser.add_argument(
        "--no-compact",
        action="store_true",
        help="never move a lone decoding sequence into one run of blocks (gather instead)",
    )
    parser.add_argument(
        "--reuse-prompt",
        action="store_true",
        help="the paged engine gets the same prompt every round (a prefix-cache hit)",
    )
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--no-mlx-lm", action="store_true")
    parser.add_argument("--graph-only", action="store_true", help="only graph ops and build ms")
    args = parser.parse_args()
    args.no_mlx_lm = args.no_mlx_lm or args.batch > 1
    return args


def main() -> None:
    args = parse_args()
    if args.no_compact:  # no engine setting turns compaction off: stub the manager's method
        KVCacheManager.compact = lambda *_, **__: None  # type: ignore[method-assign]
    bench = Bench(args)
    steps = f"{args.steps} steps x {args.rounds} rounds"
    print(f"{mx.default_device()}, {bench.engine.describe()}, {steps}")
    sides = timed_rounds(bench)
    print_rounds(bench, sides)
    if not args.no_profile and not args.graph_only:
        profiler = cProfile.Profile()
        ms, _ = paged_round(bench.engine, "prof", bench.batch(-3), args.steps, profiler)
        print(f"{ms:.2f} ms/step (profiled)")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    print_graph_only(bench)


if __name__ == "__main__":
    main()

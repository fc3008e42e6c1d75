"""In-process engine step timings (no HTTP): where does a decode step's time go?

Times the paged engine against mlx-lm's own generate_step on the same model for batch-1
decode (plain greedy and with a logit bias), for several KV pool sizes (a pool that gets
copied instead of updated in place shows up as a time that grows with the pool), for a batch
of 64 decodes, and for prefilling 64 x 512-token prompts.

    python benchmarks/engine_profile.py --model DIR [--tokens 256] [--out FILE.json]
        [--pool-gb 1,10] [--big-pool-gb 10] [--batch 64] [--batch-prompt 512]
        [--batch-tokens 128] [--prefix-tokens 2048]

(The flags after --out shrink the workload for a quick check; their defaults are the
measurement above.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.generate import generate_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.engine_build import (
    free_mlx,
    greedy,
    load_server_model,
    paged_engine,
    request,
)
from benchmarks.lib.prompts import random_ids
from mlx_manager.engine.paged_engine import PagedModelEngine
from mlx_manager.engine.request import EngineRequest
from mlx_manager.models.loaded import LoadedModel

GREEDY = greedy()
BIAS = greedy(banned=(0, 2))


def prompt(seed: int, n: int) -> tuple[int, ...]:
    return tuple(random_ids(seed, n, 10, 40000))


def timed_run(engine: PagedModelEngine, requests: list[EngineRequest]) -> dict[str, float]:
    """Run `requests` to the end: total and per-step times, first output, decode step."""
    for engine_request in requests:
        engine.add(engine_request)
    steps, first_done = 0, None
    start = time.perf_counter()
    while engine.has_work():
        events = engine.step()
        steps += 1
        if first_done is None and any(e.text or e.token_ids for e in events):
            first_done = time.perf_counter()
    total = time.perf_counter() - start
    first_s = (first_done or start) - start
    tokens = sum(r.max_tokens for r in requests)
    return {
        "total_s": total,
        "steps": steps,
        "ms_per_step": 1000 * total / steps,
        "first_output_s": first_s,
        "decode_ms_per_step": 1000 * (total - first_s) / max(steps - 1, 1),
        "tok_per_s": tokens / total,
    }


def reference_decode(model: LoadedModel, n: int) -> float:
    """ms/token of mlx-lm's generate_step, after the first token."""
    steps = generate_step(mx.array(prompt(0, 54)), model.model, max_tokens=n)
    next(steps)
    start = time.perf_counter()
    for _ in range(n - 1):
        next(steps)
    return 1000 * (time.perf_counter() - start) / (n - 1)


def batch_one(model: LoadedModel, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Batch-1 decode, greedy and with a logit bias, for each pool size."""
    for gb in args.pool_list:
        engine = paged_engine(model, kv_cache_gb=gb)
        timed_run(engine, [request("w", prompt(1, 54), GREEDY, 16)])
        for label, params in (("greedy", GREEDY), ("bias", BIAS)):
            run = timed_run(engine, [request(label, prompt(2, 54), params, args.tokens)])
            results[f"b1_{label}_{gb}gb"] = run
            print(
                f"batch 1 {label} pool {gb} GB: {run['decode_ms_per_step']:.2f} ms/step", flush=True
            )
        del engine
        free_mlx()


def big_batch(engine: PagedModelEngine, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """A batch of --batch prompts, prefilled together and decoded together (warm, then timed)."""
    for n, label in enumerate(("warm", "timed")):
        reqs = [
            request(
                f"{label}{i}", prompt(1000 * n + i, args.batch_prompt), GREEDY, args.batch_tokens
            )
            for i in range(args.batch)
        ]
        run = timed_run(engine, reqs)
        results[f"b64_{label}"] = run
        print(
            f"{args.batch} x {args.batch_prompt} prompt + {args.batch_tokens}: first output "
            f"{run['first_output_s']:.2f}s, {run['decode_ms_per_step']:.2f} ms/decode step, "
            f"{run['tok_per_s']:.0f} tok/s",
            flush=True,
        )


def prefix_hits(
    engine: PagedModelEngine, args: argparse.Namespace, results: dict[str, Any]
) -> None:
    """A: a shared prefix + a suffix; B: the same prefix + another suffix (a cache hit)."""
    shared = prompt(7, args.prefix_tokens)
    for n in range(3):
        a = timed_run(engine, [request(f"a{n}", shared + prompt(50 + n, 32), GREEDY, 2)])
        b = timed_run(engine, [request(f"b{n}", shared + prompt(60 + n, 32), GREEDY, 2)])
        results[f"prefix_{n}"] = {
            "a_first_s": a["first_output_s"],
            "b_first_s": b["first_output_s"],
        }
        print(
            f"prefix {args.prefix_tokens}: first output A {1000 * a['first_output_s']:.1f} ms, "
            f"B {1000 * b['first_output_s']:.1f} ms",
            flush=True,
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--out")
    parser.add_argument("--pool-gb", default="1,10", help="KV pool sizes of the batch-1 runs")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batch-prompt", type=int, default=512)
    parser.add_argument("--batch-tokens", type=int, default=128)
    parser.add_argument("--big-pool-gb", type=float, default=10.0)
    parser.add_argument("--prefix-tokens", type=int, default=2048)
    args = parser.parse_args()
    args.pool_list = [float(g) for g in args.pool_gb.split(",") if g.strip()]
    return args


def main() -> None:
    args = parse_args()
    model = load_server_model(Path(args.model))
    results: dict[str, Any] = {"device": str(mx.default_device())}
    reference_decode(model, 32)  # warm-up
    results["reference_ms_per_token"] = reference_decode(model, args.tokens)
    print("mlx-lm generate_step:", f"{results['reference_ms_per_token']:.2f} ms/token", flush=True)
    batch_one(model, args, results)
    engine = paged_engine(model, kv_cache_gb=args.big_pool_gb)
    big_batch(engine, args, results)
    prefix_hits(engine, args, results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""In-process engine step timings (no HTTP): where does a decode step's time go?

Times the paged engine against mlx-lm's own generate_step on the same model for batch-1
decode (plain greedy and with a logit bias), for several KV pool sizes (a pool that gets
copied instead of updated in place shows up as a time that grows with the pool), for a batch
of 64 decodes, and for prefilling 64 x 512-token prompts.

    python benchmarks/engine_profile.py --model DIR [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import mlx.core as mx
from mlx_lm.generate import generate_step

from mlx_manager.config import load_settings
from mlx_manager.engine.paged_engine import PagedModelEngine
from mlx_manager.engine.request import EngineRequest
from mlx_manager.kv.paged_storage import probe_kv_layout
from mlx_manager.models.loaded import LoadedModel, load_text_model
from mlx_manager.models.sources import ModelSpec
from mlx_manager.types import SamplingParams

GREEDY = SamplingParams(temperature=0.0)
BIAS = SamplingParams(temperature=0.0, logit_bias=((0, -100.0), (2, -100.0)))


def prompt(seed: int, n: int) -> tuple[int, ...]:
    rng = random.Random(seed)
    return tuple(rng.randrange(10, 40000) for _ in range(n))


def engine_for(model: LoadedModel, **settings: object) -> PagedModelEngine:
    layout = probe_kv_layout(model.model)
    assert layout is not None
    return PagedModelEngine(model, layout, load_settings(settings).engine())


def timed_run(engine: PagedModelEngine, requests: list[EngineRequest]) -> dict[str, float]:
    for request in requests:
        engine.add(request)
    steps, first_done = 0, None
    start = time.perf_counter()
    while engine.has_work():
        events = engine.step()
        steps += 1
        if first_done is None and any(e.text or e.token_ids for e in events):
            first_done = time.perf_counter()
    total = time.perf_counter() - start
    decode = total - ((first_done or start) - start)
    tokens = sum(r.max_tokens for r in requests)
    return {
        "total_s": total,
        "steps": steps,
        "ms_per_step": 1000 * total / steps,
        "first_output_s": (first_done or start) - start,
        "decode_ms_per_step": 1000 * decode / max(steps - 1, 1),
        "tok_per_s": tokens / total,
    }


def reference_decode(model: LoadedModel, n: int) -> float:
    steps = generate_step(mx.array(prompt(0, 54)), model.model, max_tokens=n)
    next(steps)
    start = time.perf_counter()
    for _ in range(n - 1):
        next(steps)
    return 1000 * (time.perf_counter() - start) / (n - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--out")
    args = parser.parse_args()
    path = Path(args.model)
    model = load_text_model(ModelSpec("m", str(path)), path, None, 2.0)
    results: dict[str, object] = {"device": str(mx.default_device())}
    reference_decode(model, 32)  # warm-up
    results["reference_ms_per_token"] = reference_decode(model, args.tokens)
    print("mlx-lm generate_step:", f"{results['reference_ms_per_token']:.2f} ms/token", flush=True)
    for gb in (1.0, 10.0):
        engine = engine_for(model, kv_cache_gb=gb)
        timed_run(engine, [EngineRequest("w", "m", prompt(1, 54), GREEDY, 16)])
        for label, params in (("greedy", GREEDY), ("bias", BIAS)):
            run = timed_run(engine, [EngineRequest(label, "m", prompt(2, 54), params, args.tokens)])
            results[f"b1_{label}_{gb}gb"] = run
            print(
                f"batch 1 {label} pool {gb} GB: {run['decode_ms_per_step']:.2f} ms/step", flush=True
            )
        del engine
        mx.clear_cache()
    engine = engine_for(model, kv_cache_gb=10.0)
    for n, label in enumerate(("warm", "timed")):
        reqs = [
            EngineRequest(f"{label}{i}", "m", prompt(1000 * n + i, 512), GREEDY, 128)
            for i in range(64)
        ]
        run = timed_run(engine, reqs)
        results[f"b64_{label}"] = run
        print(
            f"64 x 512 prompt + 128: first output {run['first_output_s']:.2f}s, "
            f"{run['decode_ms_per_step']:.2f} ms/decode step, {run['tok_per_s']:.0f} tok/s",
            flush=True,
        )
    shared = prompt(7, 2048)
    for n in range(3):
        a = timed_run(engine, [EngineRequest(f"a{n}", "m", shared + prompt(50 + n, 32), GREEDY, 2)])
        b = timed_run(engine, [EngineRequest(f"b{n}", "m", shared + prompt(60 + n, 32), GREEDY, 2)])
        results[f"prefix_{n}"] = {
            "a_first_s": a["first_output_s"],
            "b_first_s": b["first_output_s"],
        }
        print(
            f"prefix 2048: first output A {1000 * a['first_output_s']:.1f} ms, "
            f"B {1000 * b['first_output_s']:.1f} ms",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

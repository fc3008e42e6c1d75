"""Model pool: switching between resident models, and reloading an evicted one.

    python benchmarks/pool_switch.py [--model DIR] [--runs 10] [--kv-cache-gb 0.05] \
        [--cpu-float32-max-gb 0] [--out FILE.json]

The model (default: the embedded SmolLM2, converted) is served twice, as `a` and `b`, by the
server's own composition root (`Runtime`: engine thread, pool, engine client) in-process.

1. Switch, both resident (`--max-models 2`, the server's default precision): `pool.acquire` +
   release alternating a/b (the routing cost a request pays), and whole 1-token requests in
   interleaved pairs (a then a, a then b): the second request of a pair is "same" or "switch",
   and the median difference is what a switch costs end to end. The pool's load count must
   not move.
2. Reload (`--max-models 1`): alternating requests each evict the other model and reload it.
   Reported: the pool's load time (`mlx_lm.load` + engine setup: KV pool, layout probe) and
   the request-visible time of an evicting request, each against a bare `mlx_lm.load` of the
   same directory. Bare loads run in the benchmark's own thread between requests, with no
   request in flight (the client offers no public way to run a function on the engine
   thread), interleaved with the pool's reloads so that a busy machine slows both alike;
   medians and minimums of --runs, after one warm-up each.

`--cpu-float32-max-gb 0` (default here) keeps the weights as stored, as the bare load does;
with the server's default (2.0) the pool also upcasts to float32 on CPU, which is extra work
a bare `mlx_lm.load` does not do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx_lm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.engine_build import free_mlx
from benchmarks.lib.models import resolve_model
from benchmarks.lib.output import logger
from benchmarks.lib.stats import ms_summary as ms
from mlx_manager.config import load_settings
from mlx_manager.models.sources import parse_model_spec
from mlx_manager.runtime import Runtime
from mlx_manager.types import GenerateRequest, SamplingParams

log = logger("pool_switch")


async def one_request(runtime: Runtime, model: str) -> float:
    params = SamplingParams(max_tokens=1, temperature=0)
    request = GenerateRequest(uuid.uuid4().hex, model, params, prompt_text="Hello")
    started = time.perf_counter()
    stream = await runtime.client.submit(request)
    async for event in stream:
        if event.error is not None:
            raise RuntimeError(event.error)
    return time.perf_counter() - started


async def serving(model_dir: Path, kv_cache_gb: float, max_models: int, **flags: Any) -> Runtime:
    models = [f"a={model_dir}", f"b={model_dir}"]
    settings = load_settings(
        {"model": models, "max_models": max_models, "kv_cache_gb": kv_cache_gb, **flags}
    )
    runtime = Runtime(settings)
    await runtime.start([parse_model_spec(text) for text in models])
    return runtime


async def switch(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    runtime = await serving(model_dir, args.kv_cache_gb, max_models=2)
    pool = runtime.pool
    try:
        for model in ("a", "b", "a", "b"):
            await one_request(runtime, model)
        loads = pool.loads
        acquire = []
        for i in range(2000):
            started = time.perf_counter()
            lease = await pool.acquire("ab"[i % 2])
            acquire.append(time.perf_counter() - started)
            lease.release()
        same: list[float] = []
        switched: list[float] = []
        for i in range(args.runs * 4):
            first, second = ("a", "a") if i % 2 else ("b", "a")
            await one_request(runtime, first)
            (same if first == second else switched).append(await one_request(runtime, second))
        assert pool.loads == loads, "a switch between resident models reloaded one"
    finally:
        await runtime.stop()
    delta = statistics.median(switched) - statistics.median(same)
    return {
        "acquire_release": ms(acquire),
        "request_after_same_model": ms(same),
        "request_after_other_model": ms(switched),
        "switch_overhead_ms": round(delta * 1000, 3),
        "switch_overhead_min_ms": round((min(switched) - min(same)) * 1000, 3),
        "reloads_during_switching": pool.loads - loads,
    }


def bare_load(model_dir: Path) -> float:
    """Seconds of `mlx_lm.load` with every parameter evaluated (call with the engine idle)."""
    free_mlx()
    started = time.perf_counter()
    loaded = mlx_lm.load(str(model_dir))
    mx.eval(loaded[0].parameters())
    seconds = time.perf_counter() - started
    del loaded
    mx.clear_cache()
    return seconds


async def reload(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    flags = {"cpu_float32_max_gb": args.cpu_float32_max_gb}
    runtime = await serving(model_dir, args.kv_cache_gb, max_models=1, **flags)
    bare, pool_load, evicting, steady = [], [], [], []
    try:
        await one_request(runtime, "b")  # warm-up: evicts a, loads b
        bare_load(model_dir)  # warm-up
        for i in range(args.runs):
            bare.append(bare_load(model_dir))
            model = "ab"[i % 2]
            evicting.append(await one_request(runtime, model))
            status = {m.id: m for m in runtime.pool.status().models}
            pool_load.append(status[model].load_seconds)
            steady.append(await one_request(runtime, model))
    finally:
        await runtime.stop()
    return {
        "bare_mlx_lm_load": ms(bare),
        "pool_load": ms(pool_load),
        "evicting_request": ms(evicting),
        "request_when_resident": ms(steady),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--kv-cache-gb", type=float, default=0.05)
    parser.add_argument("--cpu-float32-max-gb", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model_dir = resolve_model(args.model)
    log(f"model {model_dir}, device {mx.default_device()}")
    switching = asyncio.run(switch(model_dir, args))
    log(f"switching: {switching}")
    reloading = asyncio.run(reload(model_dir, args))
    log(f"reloading: {reloading}")
    bare = reloading["bare_mlx_lm_load"]
    result = {
        "benchmark": "pool_switch",
        "model": str(model_dir),
        "device": str(mx.default_device()),
        "platform": platform.platform(),
        "runs": args.runs,
        "kv_cache_gb": args.kv_cache_gb,
        "cpu_float32_max_gb": args.cpu_float32_max_gb,
        "switch": switching,
        "reload": reloading,
        "ratios": {
            f"{name}_over_bare_{stat}": round(reloading[name][f"{stat}_ms"] / bare[f"{stat}_ms"], 3)
            for name in ("pool_load", "evicting_request")
            for stat in ("median", "min")
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()

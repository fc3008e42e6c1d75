"""Where a prefix-cache hit's time to first token goes, in-process (no HTTP).

    python benchmarks/prefix_profile.py --model DIR [--prefix-tokens 2048] [--suffix-tokens 32]
        [--runs 3] [--kv-gb 4]

The HTTP prefix test (`load_sweep.py --prefix-test`) sends request A (a fresh prefix + a
suffix) and then B (the same prefix + another suffix) and compares their TTFT. This script
splits B's TTFT into parts, each measured on its own, median over --runs fresh prefixes:

- tokenize: the server's tokenizer encoding the prompt's text (the HTTP path does this).
- engine A / engine B: `PagedModelEngine` from `add()` to the first token event, the paged
  engine's whole path (scheduling, prefix lookup, forward, sampling, detokenizing). B's
  prefill reads the cached prefix through the block gather (its own blocks lie elsewhere).
- floor A / floor B: mlx-lm's own forward with its own KVCache, the same tokens, argmax and a
  wait: A from an empty cache, B from a cache already holding the prefix (filled beforehand
  with room for the suffix, not timed). No server can be faster than this on this model.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

from mlx_manager.config import load_settings
from mlx_manager.engine.paged_engine import PagedModelEngine
from mlx_manager.engine.request import EngineRequest
from mlx_manager.kv.paged_storage import probe_kv_layout
from mlx_manager.models.loaded import LoadedModel, load_text_model
from mlx_manager.models.sources import ModelSpec
from mlx_manager.types import SamplingParams

GREEDY = SamplingParams(temperature=0.0)


def ids_of(seed: str, n: int, vocab: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(100, min(vocab, 30_000)) for _ in range(n)]


def engine_ttft(engine: PagedModelEngine, rid: str, ids: list[int]) -> float:
    """Seconds from `add` to the first event carrying a token; the request then runs out."""
    start = time.perf_counter()
    engine.add(EngineRequest(rid, "m", tuple(ids), GREEDY, 2))
    first: float | None = None
    while engine.has_work():
        for event in engine.step():
            if first is None and event.token_ids:
                first = time.perf_counter() - start
    assert first is not None, "no token"
    return first


def floor_ttft(model: Any, prompt: list[int], cache: list[Any] | None) -> float:
    """mlx-lm forward of `prompt` (on `cache`, else a fresh one), argmax, wait."""
    cache = cache if cache is not None else make_prompt_cache(model)
    start = time.perf_counter()
    logits = model(mx.array(prompt, dtype=mx.int32)[None], cache=cache)
    int(mx.argmax(logits[0, -1]).item())
    return time.perf_counter() - start


def filled_cache(model: Any, prefix: list[int]) -> list[Any]:
    cache = make_prompt_cache(model)
    model(mx.array(prefix, dtype=mx.int32)[None], cache=cache)
    mx.eval([c.state for c in cache])
    return cache


def tokenize_s(model: LoadedModel, ids: list[int]) -> float:
    text = model.tokenizer.decode(ids)
    start = time.perf_counter()
    model.tokenizer.encode(text)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--prefix-tokens", type=int, default=2048)
    parser.add_argument("--suffix-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kv-gb", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    path = Path(args.model)
    model = load_text_model(ModelSpec("m", str(path)), path, None, 2.0)
    layout = probe_kv_layout(model.model)
    assert layout is not None, "not a paged model"
    settings = load_settings({"kv_cache_gb": args.kv_gb}).engine()
    engine = PagedModelEngine(model, layout, settings)
    vocab = len(model.tokenizer)
    n_prefix, n_suffix = args.prefix_tokens, args.suffix_tokens
    print(f"{mx.default_device()}, {engine.describe()}, prefix {n_prefix} + suffix {n_suffix}")

    parts: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        parts.setdefault(name, []).append(seconds * 1000)

    for run in range(-1, args.runs):  # run -1 warms every path and shape up
        prefix = ids_of(f"prefix:{run}", n_prefix, vocab)
        a = prefix + ids_of(f"a:{run}", n_suffix, vocab)
        b = prefix + ids_of(f"b:{run}", n_suffix, vocab)
        timings = {"tokenize": tokenize_s(model, a)}
        timings["engine A"] = engine_ttft(engine, f"a{run}", a)
        timings["engine B"] = engine_ttft(engine, f"b{run}", b)
        timings["floor A"] = floor_ttft(model.model, a, None)
        # Filled past the prefix and trimmed back: the cache has room for the suffix, so the
        # forward is timed without KVCache growing its buffers (a copy of the whole prefix).
        cache = filled_cache(model.model, prefix + ids_of(f"room:{run}", n_suffix, vocab))
        for layer_cache in cache:
            layer_cache.trim(n_suffix)
        timings["floor B"] = floor_ttft(model.model, ids_of(f"f:{run}", n_suffix, vocab), cache)
        del cache
        if run >= 0:
            for name, seconds in timings.items():
                add(name, seconds)
    summary = {name: statistics.median(values) for name, values in parts.items()}
    for name, values in parts.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:<20} {summary[name]:8.1f} ms   ({runs})")
    ratio = summary["engine B"] / summary["engine A"]
    print(f"engine B/A {ratio:.3f}; floor B/A {summary['floor B'] / summary['floor A']:.3f}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "device": str(mx.default_device()),
                    "model": str(path),
                    "prefix_tokens": n_prefix,
                    "suffix_tokens": n_suffix,
                    "median_ms": summary,
                    "runs_ms": parts,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()

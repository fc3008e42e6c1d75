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
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.engine_build import (
    first_token_s,
    greedy,
    load_server_model,
    paged_engine,
    request,
)
from benchmarks.lib.output import write_json
from benchmarks.lib.prompts import random_ids
from mlx_manager.engine.paged_engine import PagedModelEngine
from mlx_manager.models.loaded import LoadedModel

GREEDY = greedy()


def ids_of(seed: str, n: int, vocab: int) -> list[int]:
    return random_ids(seed, n, 100, min(vocab, 30_000))


def floor_ttft(model: Any, prompt: list[int], cache: list[Any] | None) -> float:
    """mlx-lm forward of `prompt` (on `cache`, else a fresh one), argmax, wait."""
    cache = cache if cache is not None else make_prompt_cache(model)
    start = time.perf_counter()
    logits = model(mx.array(prompt, dtype=mx.int32)[None], cache=cache)
    mx.argmax(logits[0, -1]).item()  # waits for the forward
    return time.perf_counter() - start


def filled_cache(model: Any, prefix: list[int], room: int) -> list[Any]:
    """A KVCache holding `prefix`, with room for `room` more tokens (filled past the prefix
    and trimmed back, so a timed forward never waits for the cache to grow its buffers)."""
    cache = make_prompt_cache(model)
    model(mx.array(prefix, dtype=mx.int32)[None], cache=cache)
    mx.eval([c.state for c in cache])
    for layer_cache in cache:
        layer_cache.trim(room)
    return cache


def tokenize_s(model: LoadedModel, ids: list[int]) -> float:
    text = model.tokenizer.decode(ids)
    start = time.perf_counter()
    model.tokenizer.encode(text)
    return time.perf_counter() - start


def one_run(
    model: LoadedModel, engine: PagedModelEngine, args: argparse.Namespace, run: int
) -> dict[str, float]:
    """Every part's seconds for one fresh prefix."""
    vocab, n_suffix = len(model.tokenizer), args.suffix_tokens
    prefix = ids_of(f"prefix:{run}", args.prefix_tokens, vocab)
    a = prefix + ids_of(f"a:{run}", n_suffix, vocab)
    b = prefix + ids_of(f"b:{run}", n_suffix, vocab)
    timings = {"tokenize": tokenize_s(model, a)}
    timings["engine A"] = first_token_s(engine, request(f"a{run}", a, GREEDY, 2))
    timings["engine B"] = first_token_s(engine, request(f"b{run}", b, GREEDY, 2))
    timings["floor A"] = floor_ttft(model.model, a, None)
    cache = filled_cache(model.model, prefix + ids_of(f"room:{run}", n_suffix, vocab), n_suffix)
    timings["floor B"] = floor_ttft(model.model, ids_of(f"f:{run}", n_suffix, vocab), cache)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--prefix-tokens", type=int, default=2048)
    parser.add_argument("--suffix-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kv-gb", type=float, default=4.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    path = Path(args.model)
    model = load_server_model(path)
    engine = paged_engine(model, kv_cache_gb=args.kv_gb)
    n_prefix, n_suffix = args.prefix_tokens, args.suffix_tokens
    print(f"{mx.default_device()}, {engine.describe()}, prefix {n_prefix} + suffix {n_suffix}")
    one_run(model, engine, args, -1)  # warms every path and shape up
    parts: dict[str, list[float]] = {}
    for run in range(args.runs):
        for name, seconds in one_run(model, engine, args, run).items():
            parts.setdefault(name, []).append(seconds * 1000)
    summary = {name: statistics.median(values) for name, values in parts.items()}
    for name, values in parts.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:<20} {summary[name]:8.1f} ms   ({runs})")
    ratio = summary["engine B"] / summary["engine A"]
    print(f"engine B/A {ratio:.3f}; floor B/A {summary['floor B'] / summary['floor A']:.3f}")
    if args.out:
        record = {
            "device": str(mx.default_device()),
            "model": str(path),
            "prefix_tokens": n_prefix,
            "suffix_tokens": n_suffix,
            "median_ms": summary,
            "runs_ms": parts,
        }
        write_json(args.out, record)


if __name__ == "__main__":
    main()

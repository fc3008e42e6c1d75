"""Where a short forward on a long cache goes, op by op (mlx-lm's model, no server).

    python benchmarks/forward_profile.py --model DIR [--cached 2048] [--tokens 1,8,32,128]
        [--runs 5] [--out FILE]

A prefix-cache hit computes only the suffix: an M-token forward over a cache already holding
`--cached` tokens. `prefix_profile.py` shows that even mlx-lm's bare forward of that suffix
costs a large share of the whole prompt's forward. This script splits that forward, for each
M in `--tokens`, into the ops of every layer, each timed on its own over all layers at once
(so one figure is what the op costs per forward):

- forward: `model(x, cache)` on a filled KVCache (trimmed back after each run), plus argmax.
- q/k/v/o, gate/up/down, lm_head: the Linear layers on an (1, M, hidden) input.
- sdpa: `mx.fast.scaled_dot_product_attention` of M queries over cached + M keys.
- mlp / mlp compiled: the whole MLP, plain and under `mx.compile`: what fusing its
  elementwise ops saves.
- gate_transposed: the gate projection computed as `W @ x.T` (another GEMM layout), to see
  whether the layout the backend picks for small M is the slow part.

Weights are those of the model directory (random weights of a real shape do).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm import load
from mlx_lm.models.cache import make_prompt_cache

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.output import write_json


def median_ms(run: Callable[[], Any], runs: int, after: Callable[[], None] | None = None) -> float:
    """Median wall time of `run()` (which returns arrays to evaluate), after two warm-ups;
    `after()` runs, untimed, after each call."""
    times = []
    for i in range(runs + 2):
        mx.synchronize()
        start = time.perf_counter()
        mx.eval(run())
        mx.synchronize()
        if i >= 2:
            times.append((time.perf_counter() - start) * 1000)
        if after is not None:
            after()
    return statistics.median(times)


def inner(model: Any) -> Any:
    return model.model if hasattr(model, "model") else model


_COMPILED: dict[int, Any] = {}


def compiled_mlp(layer: Any) -> Any:
    """The layer's MLP under `mx.compile` (fuses its elementwise ops), built once per layer."""
    if id(layer) not in _COMPILED:
        _COMPILED[id(layer)] = mx.compile(layer.mlp)
    return _COMPILED[id(layer)]


@dataclass(slots=True)
class Inputs:
    """Random inputs of one forward of M tokens, in the model's dtype, evaluated."""

    x: Any  # (1, M, hidden): a Linear layer's input
    h: Any  # (1, M, intermediate): down_proj's input
    q: Any  # (1, heads, M, head_dim)
    kv: list[tuple[Any, Any]]  # per layer: keys and values over cached + M positions
    scale: float
    mask: str | None


def make_inputs(model: Any, m: int, cached: int) -> Inputs:
    layers, args = inner(model).layers, model.args
    heads = args.num_attention_heads
    kv_heads = getattr(args, "num_key_value_heads", heads)
    head_dim = getattr(args, "head_dim", None) or args.hidden_size // heads
    dtype = layers[0].self_attn.q_proj.weight.dtype

    def normal(*shape: int) -> Any:
        return mx.random.normal(shape).astype(dtype)

    x = normal(1, m, args.hidden_size)
    h = normal(1, m, layers[0].mlp.down_proj.weight.shape[1])
    q = normal(1, heads, m, head_dim)
    kv_shape = (1, kv_heads, cached + m, head_dim)
    inputs = Inputs(
        x=x,
        h=h,
        q=q,
        kv=[(normal(*kv_shape), normal(*kv_shape)) for _ in layers],
        scale=head_dim**-0.5,
        mask="causal" if m > 1 else None,
    )
    mx.eval(inputs.x, inputs.h, inputs.q, inputs.kv)
    return inputs


def op_calls(model: Any, i: Inputs) -> dict[str, Callable[[], Any]]:
    """Each op of a forward, run over every layer at once (one call = one forward's worth)."""
    body = inner(model)
    layers = body.layers
    lm_head = model.lm_head if hasattr(model, "lm_head") else body.embed_tokens.as_linear
    x = i.x

    def each(fn: Callable[[Any], Any]) -> Callable[[], Any]:
        return lambda: [fn(layer) for layer in layers]

    def sdpa() -> Any:
        fast = mx.fast.scaled_dot_product_attention
        return [fast(i.q, k, v, scale=i.scale, mask=i.mask) for k, v in i.kv]

    return {
        "q_proj": each(lambda layer: layer.self_attn.q_proj(x)),
        "k_proj": each(lambda layer: layer.self_attn.k_proj(x)),
        "v_proj": each(lambda layer: layer.self_attn.v_proj(x)),
        "o_proj": each(lambda layer: layer.self_attn.o_proj(x)),
        "gate_proj": each(lambda layer: layer.mlp.gate_proj(x)),
        "up_proj": each(lambda layer: layer.mlp.up_proj(x)),
        "down_proj": each(lambda layer: layer.mlp.down_proj(i.h)),
        "gate_transposed": each(lambda layer: (layer.mlp.gate_proj.weight @ x[0].T).T),
        "sdpa": sdpa,
        "mlp": each(lambda layer: layer.mlp(x)),
        "mlp compiled": each(lambda layer: compiled_mlp(layer)(x)),
        "lm_head all rows": lambda: lm_head(x),
        "lm_head last row": lambda: lm_head(x[:, -1:]),
    }


def op_timings(model: Any, m: int, cached: int, runs: int) -> dict[str, float]:
    calls = op_calls(model, make_inputs(model, m, cached))
    return {name: median_ms(fn, runs) for name, fn in calls.items()}


def forward_ms(model: Any, m: int, cached: int, runs: int) -> float:
    cache = make_prompt_cache(model)
    if cached:
        model(mx.zeros((1, cached), dtype=mx.int32), cache=cache)
        mx.eval([c.state for c in cache])
    tokens = mx.arange(100, 100 + m, dtype=mx.int32)[None]

    def once() -> Any:
        return mx.argmax(model(tokens, cache=cache)[0, -1])

    def trim() -> None:  # back to `cached` tokens, keeping the buffers' room
        for c in cache:
            c.trim(m)

    return median_ms(once, runs, trim)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--cached", type=int, default=2048)
    parser.add_argument("--tokens", default="1,8,32,128")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = load(args.model)[0]
    sizes = [int(t) for t in args.tokens.split(",")]
    results: dict[str, dict[str, float]] = {}
    print(f"{mx.default_device()}, {args.model}, cached {args.cached}")
    for m in sizes:
        row = {"forward": forward_ms(model, m, args.cached, args.runs)}
        row.update(op_timings(model, m, args.cached, args.runs))
        results[str(m)] = row
        cells = "  ".join(f"{k} {v:.2f}" for k, v in row.items())
        print(f"M={m:<4} {cells}", flush=True)
    if args.out:
        record = {
            "device": str(mx.default_device()),
            "mlx": getattr(mx, "__version__", "?"),
            "model": args.model,
            "cached_tokens": args.cached,
            "runs": args.runs,
            "median_ms_per_forward": results,
        }
        write_json(args.out, record)


if __name__ == "__main__":
    main()

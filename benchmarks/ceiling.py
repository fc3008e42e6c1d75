"""Engine ceiling: mlx-lm `batch_generate` in-process, aggregate generated tok/s per batch size.

    python benchmarks/ceiling.py --model DIR [--batch-sizes 1,8,32,64] [--prompt-tokens 512] \
        [--max-tokens 128] [--runs 1] [--eos-modes nostop[,processor,keep]] \
        [--prefill-batch-size 8] [--completion-batch-size 0] [--budget-s S] [--out FILE.json]

The model is loaded once (`mlx_lm.load`). For each batch size B: B prompts of --prompt-tokens
random single-token words (the same kind of prompt as load_sweep.py, fixed seeds, different
for every run) go to one `batch_generate` call with greedy sampling; the first call of each B
warms its shapes (kernel compilation) and is not counted, then --runs calls are timed.
tok/s = generated tokens / wall time of the call (prompt processing included, as a server's
clients see it); mlx-lm's own prompt and generation rates are recorded too.

`completion_batch_size` is B (mlx-lm's default, 32, would split B=64 into two decode batches);
`prefill_batch_size` stays at mlx-lm's default 8 (what `mlx_lm.server --prompt-concurrency`
uses) unless given.

EOS must not end a sequence early (--eos-modes; several run one after the other):
- nostop (default): `batch_generate` gets the tokenizer with no EOS ids, so nothing stops
  a sequence and no logits processor runs (the engine's best case);
- processor: a logit_bias -100 processor on the EOS / end-of-turn ids, as a server applies a
  request's `logit_bias` (mlx-lm then processes each row of the batch separately: slower);
- keep: mlx-lm's behavior (stops at EOS; random weights rarely produce it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.engine_build import free_mlx
from benchmarks.lib.machine import basic_info
from benchmarks.lib.models import read_config
from benchmarks.lib.output import logger, timestamp, write_json
from benchmarks.lib.prompts import PromptBuilder, ban_processors

log = logger("ceiling")
EOS_MODES = ("nostop", "processor", "keep")


class NoStopTokenizer:
    """The tokenizer with an empty EOS list: `batch_generate` stops only at max_tokens."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @property
    def eos_token_ids(self) -> list[int]:
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


@dataclass(slots=True)
class Setup:
    """The loaded model and what every batch shares."""

    model: Any
    tokenizer: Any
    builder: PromptBuilder
    banned: list[int]
    args: argparse.Namespace
    started: float


def run_batch(
    setup: Setup, tokenizer: Any, prompts: list[list[int]], processors: list[Any] | None
) -> dict[str, Any]:
    """One timed `batch_generate` call over `prompts`."""
    from mlx_lm.generate import batch_generate

    args = setup.args
    kwargs: dict[str, Any] = {
        "completion_batch_size": args.completion_batch_size or len(prompts),
        "prefill_batch_size": args.prefill_batch_size,
        "prefill_step_size": args.prefill_step_size,
    }
    if processors:
        kwargs["logits_processors"] = processors
    mx.synchronize()
    start = time.perf_counter()
    response = batch_generate(
        setup.model, tokenizer, prompts, max_tokens=args.max_tokens, return_token_ids=True, **kwargs
    )
    mx.synchronize()
    wall = time.perf_counter() - start
    lengths = [len(ids) for ids in response.token_ids or []]
    stats = response.stats
    return {
        "wall_s": wall,
        "generated_tokens": sum(lengths),
        "tok_s": sum(lengths) / wall,
        "short_sequences": sum(1 for n in lengths if n < args.max_tokens),
        "min_length": min(lengths) if lengths else 0,
        "mlx_prompt_tps": stats.prompt_tps,
        "mlx_generation_tps": stats.generation_tps,
        "mlx_prompt_time_s": stats.prompt_time,
        "mlx_wall_time_s": stats.wall_time,
        "peak_memory_gb": stats.peak_memory,
    }


def measure_batch(setup: Setup, eos_mode: str, batch: int) -> dict[str, Any]:
    """A warm-up call (compiles the shapes), then --runs timed calls, fresh prompts each."""
    tokenizer = NoStopTokenizer(setup.tokenizer) if eos_mode == "nostop" else setup.tokenizer
    processors = ban_processors(setup.banned) if eos_mode == "processor" else None
    tokens = setup.args.prompt_tokens

    def prompts(tag: str) -> list[list[int]]:
        return [setup.builder.ids(tokens, f"ceiling:{tag}:{batch}:{i}") for i in range(batch)]

    warm = run_batch(setup, tokenizer, prompts("warm"), processors)
    runs = [
        run_batch(setup, tokenizer, prompts(f"run{r}"), processors) for r in range(setup.args.runs)
    ]
    entry = {
        "batch_size": batch,
        "eos_mode": eos_mode,
        "tok_s": statistics.median(r["tok_s"] for r in runs),
        "runs": runs,
        "warmup": warm,
    }
    per_run = ", ".join(f"{r['tok_s']:,.1f}" for r in runs)
    log(
        f"batch {batch} ({eos_mode}): {entry['tok_s']:,.1f} tok/s (runs {per_run}; "
        f"warm-up {warm['tok_s']:,.1f}); mlx generation "
        f"{runs[-1]['mlx_generation_tps']:,.1f} tok/s, prompt "
        f"{runs[-1]['mlx_prompt_tps']:,.1f} tok/s; short {runs[-1]['short_sequences']}"
    )
    return entry


def measure(setup: Setup, eos_modes: list[str], batch_sizes: list[int]) -> list[dict[str, Any]]:
    """Every batch size in every EOS mode, until --budget-s is spent."""
    results: list[dict[str, Any]] = []
    budget = setup.args.budget_s
    for eos_mode in eos_modes:
        for batch in batch_sizes:
            spent = time.perf_counter() - setup.started
            if budget is not None and results and spent > budget:
                skipped = f"budget spent ({spent:.0f}s)"
                results.append({"batch_size": batch, "eos_mode": eos_mode, "skipped": skipped})
                log(f"batch {batch} ({eos_mode}): skipped, budget spent")
                continue
            results.append(measure_batch(setup, eos_mode, batch))
            free_mlx()
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'batch':>6} {'eos mode':>10} {'tok/s':>10} {'mlx gen tok/s':>14} "
        f"{'mlx prompt tok/s':>17} {'wall s':>7}"
    ]
    for entry in results:
        head = f"{entry['batch_size']:>6} {entry['eos_mode']:>10}"
        if "skipped" in entry:
            lines.append(f"{head} skipped: {entry['skipped']}")
            continue
        last = entry["runs"][-1]
        lines.append(
            f"{head} {entry['tok_s']:>10,.1f} {last['mlx_generation_tps']:>14,.1f} "
            f"{last['mlx_prompt_tps']:>17,.1f} {last['wall_s']:>7.2f}"
        )
    return "\n".join(lines)


def result_json(
    setup: Setup, eos_modes: list[str], load_s: float, results: list[dict[str, Any]], text: str
) -> dict[str, Any]:
    args = setup.args
    config = read_config(args.model)
    shape_keys = ("hidden_size", "num_hidden_layers", "vocab_size", "torch_dtype")
    return {
        "benchmark": "ceiling",
        "time": timestamp(),
        "machine": basic_info(),
        "model": {"path": str(args.model), **{k: config.get(k) for k in shape_keys}},
        "settings": {
            "prompt_tokens": args.prompt_tokens,
            "max_tokens": args.max_tokens,
            "runs": args.runs,
            "eos_modes": eos_modes,
            "banned_ids": setup.banned,
            "prefill_batch_size": args.prefill_batch_size,
            "completion_batch_size": args.completion_batch_size or "batch size",
            "prefill_step_size": args.prefill_step_size,
            "sampler": "greedy (mlx-lm default)",
        },
        "load_s": load_s,
        "batches": results,
        "table": text,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", type=Path, required=True, help="MLX model dir")
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=1, help="timed calls per batch size")
    parser.add_argument(
        "--eos-modes",
        default="nostop",
        help="comma-separated, each run over all batch sizes: nostop, processor, keep",
    )
    parser.add_argument("--prefill-batch-size", type=int, default=8)
    parser.add_argument("--completion-batch-size", type=int, default=0, help="0: the batch size")
    parser.add_argument("--prefill-step-size", type=int, default=2048)
    parser.add_argument(
        "--budget-s", type=float, default=None, help="skip batch sizes once this is spent"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args(argv)
    args.batch_list = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    args.eos_list = [m.strip() for m in args.eos_modes.split(",") if m.strip()]
    if not args.eos_list or set(args.eos_list) - set(EOS_MODES):
        parser.error(f"--eos-modes: {args.eos_modes!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    import mlx_lm

    args = parse_args(argv)
    started = time.perf_counter()
    builder = PromptBuilder(args.model)
    loaded = mlx_lm.load(str(args.model))
    setup = Setup(loaded[0], loaded[1], builder, builder.eos_ids(), args, started)
    load_s = time.perf_counter() - started
    log(
        f"{args.model} on {mx.default_device()}, loaded in {load_s:.1f}s; prompts "
        f"{args.prompt_tokens} tokens, max_tokens {args.max_tokens}, eos modes {args.eos_list} "
        f"(ids {setup.banned})"
    )
    results = measure(setup, args.eos_list, args.batch_list)
    text = table(results)
    print(text)
    if args.out:
        write_json(args.out, result_json(setup, args.eos_list, load_s, results, text))
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

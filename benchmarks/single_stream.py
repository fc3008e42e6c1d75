"""Single-stream decode speed: the mlx-manager server against mlx-lm in-process, in one run.

    python benchmarks/single_stream.py --model DIR_OR_embedded --max-tokens 256 --runs 3 \
        --out FILE.json

Stages run one after the other on the same model, prompt and settings, each freeing the
model before the next loads it (or, with --interleave, all loaded and taking turns):

1. reference: `mlx_lm.load` + `mlx_lm.stream_generate` in this process (greedy). On MLX's CPU
   backend the model is densified with `densify_for_cpu(model, 2.0)`, as the server does.
2. engine: the server's default engine without HTTP or threads: `load_text_model`, then
   `PagedModelEngine.step()` in a loop with the server's default settings (tells HTTP cost
   from engine cost). Like the server, it sees the same prompt every run, so from the second
   run on the prompt's first block comes from the prefix cache.
3. server: `mlx_manager.cli serve` as a subprocess, streaming chat completions over HTTP.

`--stages` can add `runner`: the single-sequence engine's `SequenceRunner.next()` +
`OutputBuilder.add()` in a loop (the engine of models the paged cache does not cover).

Every stage bans the model's stop tokens (logit bias -100 on EOS and end-of-turn ids), so each
generates exactly --max-tokens tokens. Decode tok/s is (tokens - 1) / (time of the last token -
time of the first token) on every stage; mlx-lm's own `generation_tps` is recorded too. The
ratio is the server's median decode over the reference's median decode.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib import environment
from benchmarks.lib.engine_build import CPU_FLOAT32_MAX_GB, PREFILL_STEP_SIZE
from benchmarks.lib.machine import machine_info, source_info
from benchmarks.lib.models import model_info, resolve_model
from benchmarks.lib.output import timestamp, write_json
from benchmarks.lib.prompts import BAN_BIAS, PromptPlan, chat_messages, load_plan
from benchmarks.lib.sessions import (
    EngineSession,
    ReferenceSession,
    RunnerSession,
    ServerOptions,
    ServerSession,
)
from benchmarks.lib.stages import (
    Session,
    StageResult,
    log,
    measure_interleaved,
    measure_sequential,
)
from benchmarks.lib.stats import ratio

STAGES = ("reference", "engine", "runner", "server")
DEFAULT_STAGES = ("reference", "engine", "server")


def report(stages: dict[str, StageResult]) -> tuple[str, dict[str, float | None]]:
    """The printed table (one row per stage) and the ratios."""
    lines = [
        f"{'stage':<10} {'decode tok/s (median)':>22} {'per run':>26} {'TTFT ms':>9} "
        f"{'prefill tok/s':>14} {'tokens':>7}"
    ]
    for stage in stages.values():
        decode = stage.median("decode_tps") or float("nan")
        ttft = (stage.median("ttft_s") or float("nan")) * 1000
        prefill = stage.median("prefill_tps") or float("nan")
        per_run = ", ".join(f"{r.decode_tps:.1f}" for r in stage.runs)
        tokens = ",".join(sorted({str(r.tokens) for r in stage.runs}))
        lines.append(
            f"{stage.name:<10} {decode:>22.1f} {per_run:>26} {ttft:>9.1f} {prefill:>14.1f} "
            f"{tokens:>7}"
        )
    ratios = ratio_table(stages)
    lines += [f"{name}: {value:.3f}" for name, value in ratios.items() if value is not None]
    return "\n".join(lines), ratios


def ratio_table(stages: dict[str, StageResult]) -> dict[str, float | None]:
    def median(name: str, key: str = "decode_tps") -> float | None:
        return stages[name].median(key) if name in stages else None

    return {
        "server_over_reference_decode": ratio(median("server"), median("reference")),
        "engine_over_reference_decode": ratio(median("engine"), median("reference")),
        "server_over_engine_decode": ratio(median("server"), median("engine")),
        "runner_over_reference_decode": ratio(median("runner"), median("reference")),
        "server_over_runner_decode": ratio(median("server"), median("runner")),
        "server_over_reference_generation_tps": ratio(
            median("server"), median("reference", "generation_tps")
        ),
    }


def check_same_tokens(stages: dict[str, StageResult]) -> dict[str, Any]:
    """Greedy decoding of the same prompt should give the same ids in-process."""
    ref = stages.get("reference")
    if ref is None or ref.token_ids is None:
        return {}
    return {
        f"{name}_tokens_equal_reference": stage.token_ids == ref.token_ids
        for name, stage in stages.items()
        if name != "reference" and stage.token_ids is not None
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", default="embedded", help="model dir, or 'embedded'")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument(
        "--stages",
        default=",".join(DEFAULT_STAGES),
        help=f"comma-separated subset of {','.join(STAGES)}",
    )
    parser.add_argument(
        "--prompt-repeat", type=int, default=0, help="lengthen the user message N times"
    )
    parser.add_argument("--server-timeout", type=float, default=600.0, help="seconds to ready")
    parser.add_argument("--request-timeout", type=float, default=600.0)
    parser.add_argument(
        "--server-arg", action="append", help="extra `serve` flag (repeatable), e.g. --log-level"
    )
    parser.add_argument(
        "--plain-server",
        action="store_true",
        help="start `python -m mlx_manager.cli` directly (no device line in the log)",
    )
    parser.add_argument(
        "--profile-s",
        type=int,
        default=0,
        help="after the timed runs, py-spy the server for this many seconds of requests",
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="load every stage at once and alternate their runs (rotating order) instead of "
        "one stage after the other; cancels drift of the machine between stages",
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="server log (default: --out's)")
    parser.add_argument(
        "--src",
        type=Path,
        default=environment.REPO,
        help="directory holding the mlx_manager package to benchmark (e.g. a `git archive` "
        "snapshot of a commit); default: this checkout",
    )
    return check_args(parser, parser.parse_args(argv))


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    args.src = args.src.resolve()
    if not environment.has_package(args.src):
        parser.error(f"no mlx_manager package in {args.src}")
    args.stage_list = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(args.stage_list) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s): {', '.join(sorted(unknown))}")
    return args


def session_opener(
    args: argparse.Namespace, path: Path, messages: list[dict[str, str]], plan: PromptPlan
) -> Callable[[str], Session]:
    """`open_session(name)` for the measuring functions."""
    log_dir = args.log_dir or (args.out.parent if args.out else Path.cwd())
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out.stem if args.out else "single_stream"
    options = ServerOptions(
        src=args.src,
        log_path=log_dir / f"{stem}.server.log",
        extra_args=tuple(args.server_arg or ()),
        plain=args.plain_server,
        start_timeout=args.server_timeout,
        request_timeout=args.request_timeout,
        profile_s=args.profile_s,
    )

    def open_session(name: str) -> Session:
        if name == "server":
            return ServerSession(path, messages, plan, args.max_tokens, options)
        kinds: dict[str, Callable[[Path, PromptPlan, int], Session]] = {
            "reference": ReferenceSession,
            "engine": EngineSession,
            "runner": RunnerSession,
        }
        return kinds[name](path, plan, args.max_tokens)

    return open_session


def settings_of(
    args: argparse.Namespace, plan: PromptPlan, messages: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "max_tokens": args.max_tokens,
        "runs": args.runs,
        "temperature": 0,
        "stop_bias": BAN_BIAS,
        "prefill_step_size": PREFILL_STEP_SIZE,
        "cpu_float32_max_gb": CPU_FLOAT32_MAX_GB,
        "order": "interleaved" if args.interleave else "sequential",
        "prompt_repeat": args.prompt_repeat,
        "prompt_tokens": len(plan.ids),
        "banned_stop_ids": plan.stop_ids,
        "messages": messages,
        "decode_tps": "(tokens - 1) / (t_last_token - t_first_token), same on every stage",
    }


def main(argv: list[str] | None = None) -> int:
    environment.maybe_reexec_with_openblas()
    args = parse_args(argv)
    environment.use_source(args.src)  # before any mlx_manager import
    import mlx.core as mx

    import mlx_manager

    path = resolve_model(args.model)
    messages = chat_messages(args.prompt_repeat)
    log(f"model {path} on {mx.default_device()}; stages {args.stage_list}")
    load_at_start = list(os.getloadavg())
    plan = load_plan(path, messages)
    log(f"prompt: {len(plan.ids)} tokens; banned stop ids {plan.stop_ids}")
    open_session = session_opener(args, path, messages, plan)
    if args.interleave:
        stages, rounds = measure_interleaved(open_session, args.stage_list, args.runs)
    else:
        stages, rounds = measure_sequential(open_session, args.stage_list, args.runs), []
    table, ratios = report(stages)
    print(table)
    result = {
        "benchmark": "single_stream",
        "time": timestamp(),
        "machine": {**machine_info(), "load_average_1_5_15min_at_start": load_at_start},
        "model": model_info(path),
        "server_source": {
            **source_info(args.src),
            "imported_from": str(mlx_manager.__file__),
        },
        "settings": settings_of(args, plan, messages),
        "stages": {name: stage.to_json() for name, stage in stages.items()},
        "ratios": ratios,
        "rounds": rounds,
        "round_ratios_server_over_reference": [
            r["server"] / r["reference"] for r in rounds if "server" in r and "reference" in r
        ],
        "checks": check_same_tokens(stages),
        "table": table,
    }
    if args.out:
        write_json(args.out, result)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

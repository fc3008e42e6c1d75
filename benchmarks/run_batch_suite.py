"""One-call batching benchmark: engine ceiling, mlx_lm.server, MLX Manager, in that order.

    python benchmarks/run_batch_suite.py --model DIR --out-dir $OUT \
        [--build-shape 0.5b --tokenizer TOKENIZER_DIR] \
        [--ceiling-batches 1,8,32,64] [--mlx-lm-concurrency 1,8,32,64] \
        [--manager-concurrency 1,8,32,64,128,256] [--prompt-tokens 512] [--max-tokens 128] \
        [--manager-args "--kv-cache-gb 20 --max-num-seqs 256"] [--mlx-lm-args ""] \
        [--total-budget-s 540] [--phases ceiling,mlx_lm,manager]

Phases, each a subprocess with its own time box (the servers are stopped before the next
phase, so one model is in memory at a time):

1. ceiling: benchmarks/ceiling.py (mlx-lm `batch_generate` in-process) at --ceiling-batches.
2. mlx_lm: `python -m mlx_lm.server --model DIR --port P [--mlx-lm-args]`, then
   benchmarks/load_sweep.py at --mlx-lm-concurrency (text prompts, model "default_model").
3. manager: `python -m mlx_manager.cli serve --model DIR --port P [--manager-args]`, then
   load_sweep.py at --manager-concurrency and load_sweep.py --prefix-test.

Every server request bans the EOS / end-of-turn ids with logit_bias -100 (load_sweep's
`--eos-ids auto`) and the ceiling runs without stop tokens, so everything generates exactly
--max-tokens tokens. Writes ceiling.json, mlx_lm.json, manager.json, manager_prefix.json,
the server logs and summary.json / summary.txt (the combined table: tok/s per concurrency and
the ratios MLX Manager / ceiling at the same batch size and MLX Manager / mlx_lm.server) into
--out-dir. Budgets: each phase gets its --*-budget-s, capped so that the whole run stays
within --total-budget-s; a level that would start without --min-level-s left is skipped.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.environment import BENCHMARKS, REPO, has_package
from benchmarks.lib.machine import source_info
from benchmarks.lib.output import logger, read_json, write_json
from benchmarks.lib.processes import free_port, run_child
from benchmarks.lib.server import ServerProcess, manager_command, mlx_lm_command
from benchmarks.lib.stats import Budget, ratio

log = logger("suite", clock=True)


# ---------------------------------------------------------------- the summary


def by_concurrency(sweep: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    if not sweep:
        return {}
    return {lv["concurrency"]: lv for lv in sweep.get("levels", []) if not lv.get("skipped")}


def ceiling_rates(ceiling: dict[str, Any] | None) -> tuple[str, dict[int, float], dict[int, float]]:
    """The ceiling's first EOS mode and its tok/s per batch size, plus the `processor` mode's
    (when it ran after another one)."""
    batches = [b for b in (ceiling or {}).get("batches", []) if "skipped" not in b]
    first = batches[0].get("eos_mode", "nostop") if batches else "nostop"
    rates = {b["batch_size"]: b["tok_s"] for b in batches if b.get("eos_mode") == first}
    processor = {
        b["batch_size"]: b["tok_s"]
        for b in batches
        if b.get("eos_mode") == "processor" and first != "processor"
    }
    return first, rates, processor


def summary_row(
    c: int, ceiling: tuple[str, float | None, float | None], lm: dict[str, Any], mm: dict[str, Any]
) -> dict[str, Any]:
    """One concurrency: the three tok/s, failures, MLX Manager's latencies, the ratios.
    `ceiling`: (EOS mode, tok/s, tok/s with the logit_bias processor)."""
    mode, ceiling_tok_s, processor_tok_s = ceiling
    return {
        "concurrency": c,
        "ceiling_tok_s": ceiling_tok_s,
        "ceiling_eos_mode": mode,
        "ceiling_processor_tok_s": processor_tok_s,
        "mlx_lm_tok_s": lm.get("output_tok_s"),
        "mlx_lm_failed": lm.get("failed"),
        "mlx_lm_requests": lm.get("requests"),
        "manager_tok_s": mm.get("output_tok_s"),
        "manager_failed": mm.get("failed"),
        "manager_requests": mm.get("requests"),
        "manager_ttft_p50_s": mm.get("ttft_p50_s"),
        "manager_ttft_p99_s": mm.get("ttft_p99_s"),
        "manager_itl_p50_s": mm.get("itl_p50_s"),
        "manager_itl_p99_s": mm.get("itl_p99_s"),
        "manager_over_ceiling": ratio(mm.get("output_tok_s"), ceiling_tok_s),
        "manager_over_mlx_lm": ratio(mm.get("output_tok_s"), lm.get("output_tok_s")),
        "mlx_lm_over_ceiling": ratio(lm.get("output_tok_s"), ceiling_tok_s),
    }


def summary_rows(out_dir: Path) -> tuple[list[dict[str, Any]], dict[int, float]]:
    mode, ceil, processor = ceiling_rates(read_json(out_dir / "ceiling.json"))
    lm = by_concurrency(read_json(out_dir / "mlx_lm.json"))
    mm = by_concurrency(read_json(out_dir / "manager.json"))
    rows = [
        summary_row(c, (mode, ceil.get(c), processor.get(c)), lm.get(c, {}), mm.get(c, {}))
        for c in sorted(set(ceil) | set(lm) | set(mm))
    ]
    return rows, processor


def f(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def failed(n: int | None, total: int | None) -> str:
    return "-" if n is None else f"{n}/{total}"


def row_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'conc':>5} {'ceiling':>9} {'mlx_lm':>9} {'failed':>7} {'manager':>9} {'failed':>7} "
        f"{'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} "
        f"{'mgr/ceil':>9} {'mgr/mlx_lm':>11} {'mlx_lm/ceil':>12}",
        f"{'':>5} {'tok/s':>9} {'tok/s':>9} {'':>7} {'tok/s':>9} {'':>7} "
        f"{'ms':>9} {'ms':>9} {'ms':>8} {'ms':>8}",
    ]
    for r in rows:
        lines.append(
            f"{r['concurrency']:>5} {f(r['ceiling_tok_s']):>9} {f(r['mlx_lm_tok_s']):>9} "
            f"{failed(r['mlx_lm_failed'], r['mlx_lm_requests']):>7} {f(r['manager_tok_s']):>9} "
            f"{failed(r['manager_failed'], r['manager_requests']):>7} "
            f"{ms(r['manager_ttft_p50_s']):>9} {ms(r['manager_ttft_p99_s']):>9} "
            f"{ms(r['manager_itl_p50_s']):>8} {ms(r['manager_itl_p99_s']):>8} "
            f"{f(r['manager_over_ceiling'], '.2f'):>9} {f(r['manager_over_mlx_lm'], '.2f'):>11} "
            f"{f(r['mlx_lm_over_ceiling'], '.2f'):>12}"
        )
    return lines


def prefix_line(name: str, p: dict[str, Any]) -> str:
    return (
        f"{name} prefix ({p['prefix_tokens']} shared tokens): TTFT A "
        f"{f((p['ttft_a_median_s'] or 0) * 1000, ',.1f')} ms, B "
        f"{f((p['ttft_b_median_s'] or 0) * 1000, ',.1f')} ms, B/A "
        f"{f(p['ratio_b_over_a_median'], '.3f')} "
        f"({'pass' if p['pass'] else 'FAIL'}: goal <= 0.2)"
    )


def summarize(out_dir: Path, phases: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """summary.json's content and the combined table, from the phases' JSON files."""
    rows, processor = summary_rows(out_dir)
    lines = row_lines(rows)
    if processor:
        lines.append(
            "ceiling with a logit_bias processor (as the servers get): "
            + ", ".join(f"{c}: {v:,.0f}" for c, v in sorted(processor.items()))
            + " tok/s"
        )
    prefix = (read_json(out_dir / "manager_prefix.json") or {}).get("prefix_test")
    mlx_lm_prefix = (read_json(out_dir / "mlx_lm_prefix.json") or {}).get("prefix_test")
    lines += [prefix_line(n, p) for n, p in (("manager", prefix), ("mlx_lm", mlx_lm_prefix)) if p]
    lines += [f"{name}: {info['error']}" for name, info in phases.items() if info.get("error")]
    table = "\n".join(lines)
    ceiling = read_json(out_dir / "ceiling.json") or {}
    summary = {
        "rows": rows,
        "prefix_test": prefix,
        "mlx_lm_prefix_test": mlx_lm_prefix,
        "phases": phases,
        "machine": ceiling.get("machine"),
        "model": ceiling.get("model"),
        "table": table,
    }
    return summary, table


# ---------------------------------------------------------------- phases


def phase_ceiling(args: argparse.Namespace, clock: Budget, info: dict[str, Any]) -> None:
    budget = clock.budget(args.ceiling_budget_s, reserve=args.reserve_s)
    command = [sys.executable, str(BENCHMARKS / "ceiling.py"), "--model", str(args.model)]
    command += ["--batch-sizes", args.ceiling_batches, "--prompt-tokens", str(args.prompt_tokens)]
    command += ["--max-tokens", str(args.max_tokens), "--budget-s", f"{max(budget - 30, 10):.0f}"]
    command += ["--out", str(args.out_dir / "ceiling.json"), *shlex.split(args.ceiling_args)]
    info["rc"] = run_child(command, budget, args.out_dir / "ceiling.log", REPO, log)


@dataclass(frozen=True, slots=True)
class ServerPhase:
    """One server phase: how to start the server and what to send it."""

    name: str  # mlx_lm | manager
    command: list[str]
    port: int
    cwd: Path
    concurrency: str
    budget_s: float
    model: str | None  # the request's model field (None: the first of /v1/models)
    prefix: bool  # also run the prefix test


def sweep_command(
    args: argparse.Namespace, base: str, model: str, label: str, out: Path, flags: list[str]
) -> list[str]:
    """load_sweep.py against `base` with the suite's prompt shape and `flags`."""
    command = [sys.executable, str(BENCHMARKS / "load_sweep.py"), "--url", base]
    command += ["--model", model, "--tokenizer", str(args.model)]
    command += [*flags, "--label", label, "--out", str(out), *shlex.split(args.sweep_args)]
    return command


def level_flags(args: argparse.Namespace, concurrency: str, budget_s: float) -> list[str]:
    return [
        *("--concurrency", concurrency, "--prompt-tokens", str(args.prompt_tokens)),
        *("--max-tokens", str(args.max_tokens), "--level-timeout", str(args.level_timeout)),
        *("--timeout", str(args.level_timeout), "--budget-s", f"{budget_s:.0f}"),
        *("--min-level-s", str(args.min_level_s)),
    ]


def run_sweeps(
    args: argparse.Namespace, phase: ServerPhase, base: str, model: str, info: dict[str, Any]
) -> None:
    """The load sweep, then (if asked) the prefix test, within the phase's budget."""
    start = time.monotonic()
    out = args.out_dir
    prefix_s = args.prefix_budget_s if phase.prefix else 0.0
    sweep_s = max(phase.budget_s - prefix_s - 20, 10)
    flags = level_flags(args, phase.concurrency, sweep_s)
    command = sweep_command(args, base, model, phase.name, out / f"{phase.name}.json", flags)
    info["sweep_rc"] = run_child(command, sweep_s + 30, out / f"{phase.name}.sweep.log", REPO, log)
    if not phase.prefix:
        return
    left = phase.budget_s - (time.monotonic() - start)
    flags = ["--prefix-test", "--prefix-tokens", str(args.prefix_tokens)]
    flags += ["--timeout", str(args.level_timeout)]
    label, json_out = f"{phase.name}_prefix", out / f"{phase.name}_prefix.json"
    command = sweep_command(args, base, model, label, json_out, flags)
    time_box = max(min(left, prefix_s + 15), 15)
    info["prefix_rc"] = run_child(command, time_box, out / f"{phase.name}.prefix.log", REPO, log)


def phase_server(
    args: argparse.Namespace, clock: Budget, info: dict[str, Any], phase: ServerPhase
) -> None:
    start = time.monotonic()
    budget = clock.budget(phase.budget_s, reserve=args.reserve_s)
    log_path = args.out_dir / f"{phase.name}.server.log"
    with ServerProcess(phase.name, phase.command, phase.port, log_path, phase.cwd) as server:
        model_id = server.wait_completion(min(args.server_start_timeout, budget), phase.model)
        info["ready_s"] = server.ready_s
        if model_id is None:
            info["error"] = f"server not ready (see {phase.name}.server.log)"
            return
        left = budget - (time.monotonic() - start)
        run_sweeps(args, replace(phase, budget_s=left), server.base, model_id, info)


def server_phase(args: argparse.Namespace, name: str) -> ServerPhase:
    port = free_port()
    if name == "mlx_lm":
        return ServerPhase(
            name=name,
            command=mlx_lm_command(args.model, port, shlex.split(args.mlx_lm_args)),
            port=port,
            cwd=REPO,
            concurrency=args.mlx_lm_concurrency,
            budget_s=args.mlx_lm_budget_s,
            model="default_model",
            prefix=args.mlx_lm_prefix,
        )
    return ServerPhase(
        name=name,
        command=manager_command(args.model, port, shlex.split(args.manager_args)),
        port=port,
        cwd=args.manager_src,  # `python -m mlx_manager.cli` imports it from there
        concurrency=args.manager_concurrency,
        budget_s=args.manager_budget_s,
        model=None,
        prefix=True,
    )


def build_model(args: argparse.Namespace) -> None:
    if (args.model / "config.json").is_file():
        log(f"model {args.model} exists: not rebuilt")
        return
    if not args.tokenizer:
        raise SystemExit("--build-shape needs --tokenizer")
    command = [sys.executable, str(BENCHMARKS / "make_random_model.py"), str(args.model)]
    command += ["--shape", args.build_shape, "--tokenizer", str(args.tokenizer)]
    command += ["--dtype", args.build_dtype]
    log(f"$ {shlex.join(command)}")
    subprocess.run(command, check=True, cwd=REPO)


# ---------------------------------------------------------------- main


def add_budget_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--total-budget-s", type=float, default=540.0)
    parser.add_argument("--ceiling-budget-s", type=float, default=100.0)
    parser.add_argument("--mlx-lm-budget-s", type=float, default=150.0, help="start included")
    parser.add_argument("--manager-budget-s", type=float, default=260.0, help="start included")
    parser.add_argument("--prefix-budget-s", type=float, default=40.0)
    parser.add_argument("--level-timeout", type=float, default=90.0)
    parser.add_argument("--min-level-s", type=float, default=15.0)
    parser.add_argument("--server-start-timeout", type=float, default=120.0)
    parser.add_argument(
        "--reserve-s", type=float, default=5.0, help="kept back from each phase for the summary"
    )


def add_shape_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="MLX model dir")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--build-shape", default=None, help="build --model first if absent")
    parser.add_argument("--build-dtype", default="bfloat16")
    parser.add_argument("--tokenizer", type=Path, default=None, help="for --build-shape")
    parser.add_argument("--phases", default="ceiling,mlx_lm,manager")
    parser.add_argument("--ceiling-batches", default="1,8,32,64")
    parser.add_argument("--mlx-lm-concurrency", default="1,8,32,64")
    parser.add_argument("--manager-concurrency", default="1,8,32,64,128,256")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prefix-tokens", type=int, default=2048)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_shape_args(parser)
    parser.add_argument("--manager-args", default="", help="extra `mlx_manager.cli serve` flags")
    parser.add_argument(
        "--manager-src",
        type=Path,
        default=REPO,
        help="dir holding the mlx_manager package to serve (the server runs there, so "
        "`python -m` imports it first), e.g. a `git archive` snapshot",
    )
    parser.add_argument("--mlx-lm-args", default="", help="extra `mlx_lm.server` flags")
    parser.add_argument("--ceiling-args", default="", help="extra ceiling.py flags")
    parser.add_argument("--sweep-args", default="", help="extra load_sweep.py flags (both)")
    parser.add_argument("--mlx-lm-prefix", action="store_true", help="prefix test on mlx_lm too")
    add_budget_args(parser)
    args = parser.parse_args(argv)
    args.model, args.out_dir = args.model.resolve(), args.out_dir.resolve()
    args.manager_src = args.manager_src.resolve()
    if not has_package(args.manager_src):
        parser.error(f"no mlx_manager package in {args.manager_src}")
    if args.tokenizer is not None:
        args.tokenizer = args.tokenizer.resolve()
    args.phase_list = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phase_list) - {"ceiling", "mlx_lm", "manager"}
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}")
    return args


def run_phases(args: argparse.Namespace, clock: Budget) -> dict[str, dict[str, Any]]:
    phases: dict[str, dict[str, Any]] = {}
    for phase in args.phase_list:
        info: dict[str, Any] = {"started_s": round(clock.elapsed(), 1)}
        phases[phase] = info
        log(f"phase {phase}: {clock.left():.0f}s of the total budget left")
        if phase == "ceiling":
            phase_ceiling(args, clock, info)
        else:
            phase_server(args, clock, info, server_phase(args, phase))
        info["took_s"] = round(clock.elapsed() - info["started_s"], 1)
    return phases


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = Budget(args.total_budget_s)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.build_shape:
        build_model(args)
    phases = run_phases(args, clock)
    summary, table = summarize(args.out_dir, phases)
    summary["settings"] = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k != "phase_list"
    }
    summary["total_s"] = round(clock.elapsed(), 1)
    summary["manager_source"] = source_info(args.manager_src)
    write_json(args.out_dir / "summary.json", summary)
    (args.out_dir / "summary.txt").write_text(table + "\n")
    print(table)
    log(f"done in {summary['total_s']:.0f}s; wrote {args.out_dir}/summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

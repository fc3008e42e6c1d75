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
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def log(message: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Clock:
    """The whole run's deadline; phases take min(their budget, what is left - reserve)."""

    def __init__(self, total_s: float) -> None:
        self.start = time.monotonic()
        self.total_s = total_s

    def left(self) -> float:
        return self.total_s - (time.monotonic() - self.start)

    def budget(self, wanted: float, reserve: float = 0.0) -> float:
        return max(0.0, min(wanted, self.left() - reserve))


def run_child(command: list[str], timeout: float, log_path: Path) -> int:
    """Run a benchmark script; stdout+stderr to our stderr and `log_path`; stop it at timeout."""
    log(f"$ {shlex.join(command)}  (time box {timeout:.0f}s)")
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            cwd=REPO,
        )

        def copy() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stderr.write(line)
                out.write(line)

        reader = threading.Thread(target=copy, daemon=True)
        reader.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"time box of {timeout:.0f}s reached: stopping pid {proc.pid}")
            stop_group(proc)
        reader.join(10)
        sys.stderr.flush()
    return proc.returncode if proc.returncode is not None else -9


def stop_group(proc: subprocess.Popen[Any], grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGINT, then SIGKILL to the process group of a child we started."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGINT, 5.0), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue


class Server:
    """A server subprocess (its own process group), logged to a file, stopped on exit."""

    def __init__(
        self, name: str, command: list[str], port: int, log_path: Path, cwd: Path = REPO
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.command = command
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[Any] | None = None
        self.ready_s: float | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        log(f"starting {self.name}: {shlex.join(self.command)}")
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.cwd,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            log(f"stopping {self.name} (pid {self.proc.pid})")
            stop_group(self.proc)
        self._log.close()

    def wait_ready(self, timeout: float, model: str | None) -> str | None:
        """Until /v1/models answers and a 1-token completion succeeds (the model is loaded).

        Returns the model id to send (`model`, or the first listed one), None if not ready.
        """
        assert self.proc is not None
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
                return None
            try:
                if model is None:
                    response = httpx.get(self.base + "/v1/models", timeout=10)
                    data = response.json().get("data") if response.status_code == 200 else None
                    model = str(data[0]["id"]) if data else None
                if model is not None:
                    body = {"model": model, "prompt": "Hello", "max_tokens": 1, "stream": False}
                    response = httpx.post(self.base + "/v1/completions", json=body, timeout=120)
                    if response.status_code == 200:
                        self.ready_s = time.monotonic() - start
                        log(f"{self.name} ready after {self.ready_s:.1f}s")
                        return model
                    log(f"{self.name} probe: {response.status_code} {response.text[:200]}")
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        log(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}")
        return None


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data


def sweep_command(
    args: argparse.Namespace,
    base: str,
    model: str,
    concurrency: str,
    budget_s: float,
    out: Path,
    label: str,
    extra: list[str],
) -> list[str]:
    return [
        sys.executable,
        str(HERE / "load_sweep.py"),
        "--url",
        base,
        "--model",
        model,
        "--tokenizer",
        str(args.model),
        "--concurrency",
        concurrency,
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--max-tokens",
        str(args.max_tokens),
        "--level-timeout",
        str(args.level_timeout),
        "--timeout",
        str(args.level_timeout),
        "--budget-s",
        f"{budget_s:.0f}",
        "--min-level-s",
        str(args.min_level_s),
        "--label",
        label,
        "--out",
        str(out),
        *extra,
    ]


# ---------------------------------------------------------------- the summary


def by_concurrency(sweep: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    if not sweep:
        return {}
    return {lv["concurrency"]: lv for lv in sweep.get("levels", []) if not lv.get("skipped")}


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def summarize(out_dir: Path, phases: dict[str, Any]) -> tuple[dict[str, Any], str]:
    ceiling = read_json(out_dir / "ceiling.json")
    mlx_lm = read_json(out_dir / "mlx_lm.json")
    manager = read_json(out_dir / "manager.json")
    prefix = read_json(out_dir / "manager_prefix.json")
    batches = [b for b in (ceiling or {}).get("batches", []) if "skipped" not in b]
    modes = [b.get("eos_mode", "nostop") for b in batches]
    first_mode = modes[0] if modes else "nostop"
    ceil = {b["batch_size"]: b["tok_s"] for b in batches if b.get("eos_mode") == first_mode}
    ceil_processor = {
        b["batch_size"]: b["tok_s"]
        for b in batches
        if b.get("eos_mode") == "processor" and first_mode != "processor"
    }
    lm = by_concurrency(mlx_lm)
    mm = by_concurrency(manager)
    rows: list[dict[str, Any]] = []
    for c in sorted(set(ceil) | set(lm) | set(mm)):
        lm_level, mm_level = lm.get(c, {}), mm.get(c, {})
        rows.append(
            {
                "concurrency": c,
                "ceiling_tok_s": ceil.get(c),
                "ceiling_eos_mode": first_mode,
                "ceiling_processor_tok_s": ceil_processor.get(c),
                "mlx_lm_tok_s": lm_level.get("output_tok_s"),
                "mlx_lm_failed": lm_level.get("failed"),
                "mlx_lm_requests": lm_level.get("requests"),
                "manager_tok_s": mm_level.get("output_tok_s"),
                "manager_failed": mm_level.get("failed"),
                "manager_requests": mm_level.get("requests"),
                "manager_ttft_p50_s": mm_level.get("ttft_p50_s"),
                "manager_ttft_p99_s": mm_level.get("ttft_p99_s"),
                "manager_itl_p50_s": mm_level.get("itl_p50_s"),
                "manager_itl_p99_s": mm_level.get("itl_p99_s"),
                "manager_over_ceiling": ratio(mm_level.get("output_tok_s"), ceil.get(c)),
                "manager_over_mlx_lm": ratio(
                    mm_level.get("output_tok_s"), lm_level.get("output_tok_s")
                ),
                "mlx_lm_over_ceiling": ratio(lm_level.get("output_tok_s"), ceil.get(c)),
            }
        )

    def f(value: float | None, spec: str = ",.0f") -> str:
        return "-" if value is None else format(value, spec)

    def failed(n: int | None, total: int | None) -> str:
        return "-" if n is None else f"{n}/{total}"

    lines = [
        f"{'conc':>5} {'ceiling':>9} {'mlx_lm':>9} {'failed':>7} {'manager':>9} {'failed':>7} "
        f"{'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} "
        f"{'mgr/ceil':>9} {'mgr/mlx_lm':>11} {'mlx_lm/ceil':>12}",
        f"{'':>5} {'tok/s':>9} {'tok/s':>9} {'':>7} {'tok/s':>9} {'':>7} "
        f"{'ms':>9} {'ms':>9} {'ms':>8} {'ms':>8}",
    ]
    for r in rows:

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:,.0f}"

        lines.append(
            f"{r['concurrency']:>5} {f(r['ceiling_tok_s']):>9} {f(r['mlx_lm_tok_s']):>9} "
            f"{failed(r['mlx_lm_failed'], r['mlx_lm_requests']):>7} {f(r['manager_tok_s']):>9} "
            f"{failed(r['manager_failed'], r['manager_requests']):>7} "
            f"{ms(r['manager_ttft_p50_s']):>9} {ms(r['manager_ttft_p99_s']):>9} "
            f"{ms(r['manager_itl_p50_s']):>8} {ms(r['manager_itl_p99_s']):>8} "
            f"{f(r['manager_over_ceiling'], '.2f'):>9} {f(r['manager_over_mlx_lm'], '.2f'):>11} "
            f"{f(r['mlx_lm_over_ceiling'], '.2f'):>12}"
        )
    if ceil_processor:
        lines.append(
            "ceiling with a logit_bias processor (as the servers get): "
            + ", ".join(f"{c}: {v:,.0f}" for c, v in sorted(ceil_processor.items()))
            + " tok/s"
        )
    prefix_summary = (prefix or {}).get("prefix_test")
    mlx_lm_prefix = (read_json(out_dir / "mlx_lm_prefix.json") or {}).get("prefix_test")
    for name, p in (("manager", prefix_summary), ("mlx_lm", mlx_lm_prefix)):
        if not p:
            continue
        lines.append(
            f"{name} prefix ({p['prefix_tokens']} shared tokens): TTFT A "
            f"{f((p['ttft_a_median_s'] or 0) * 1000, ',.1f')} ms, B "
            f"{f((p['ttft_b_median_s'] or 0) * 1000, ',.1f')} ms, B/A "
            f"{f(p['ratio_b_over_a_median'], '.3f')} "
            f"({'pass' if p['pass'] else 'FAIL'}: goal <= 0.2)"
        )
    for name, info in phases.items():
        if info.get("error"):
            lines.append(f"{name}: {info['error']}")
    table = "\n".join(lines)
    summary = {
        "rows": rows,
        "prefix_test": prefix_summary,
        "mlx_lm_prefix_test": mlx_lm_prefix,
        "phases": phases,
        "machine": (ceiling or {}).get("machine"),
        "model": (ceiling or {}).get("model"),
        "table": table,
    }
    return summary, table


def source_info(src: Path) -> dict[str, Any]:
    """Which mlx_manager ran: a snapshot's COMMIT file, or the checkout's HEAD and dirt."""
    info: dict[str, Any] = {"src": str(src)}
    if (src / "COMMIT").is_file():
        info["commit"] = (src / "COMMIT").read_text().strip()
        return info
    try:
        git = ["git", "-C", str(src)]
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "mlx_manager"], capture_output=True, text=True
        )
    except OSError:
        return info
    if head.returncode == 0:
        info["commit"] = head.stdout.strip()
        info["mlx_manager_dirty"] = bool(dirty.stdout.strip())
    return info


# ---------------------------------------------------------------- phases


def phase_ceiling(args: argparse.Namespace, clock: Clock, info: dict[str, Any]) -> None:
    budget = clock.budget(args.ceiling_budget_s, reserve=args.reserve_s)
    command = [
        sys.executable,
        str(HERE / "ceiling.py"),
        "--model",
        str(args.model),
        "--batch-sizes",
        args.ceiling_batches,
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--max-tokens",
        str(args.max_tokens),
        "--budget-s",
        f"{max(budget - 30, 10):.0f}",
        "--out",
        str(args.out_dir / "ceiling.json"),
        *shlex.split(args.ceiling_args),
    ]
    info["rc"] = run_child(command, budget, args.out_dir / "ceiling.log")


def phase_server(
    args: argparse.Namespace,
    clock: Clock,
    info: dict[str, Any],
    name: str,
    command: list[str],
    port: int,
    concurrency: str,
    budget_s: float,
    model: str | None,
    sweep_extra: list[str],
    prefix: bool,
) -> None:
    start = time.monotonic()
    budget = clock.budget(budget_s, reserve=args.reserve_s)
    cwd = args.manager_src if name == "manager" else REPO
    with Server(name, command, port, args.out_dir / f"{name}.server.log", cwd) as server:
        model_id = server.wait_ready(min(args.server_start_timeout, budget), model)
        info["ready_s"] = server.ready_s
        if model_id is None:
            info["error"] = f"server not ready (see {name}.server.log)"
            return
        left = budget - (time.monotonic() - start)
        prefix_s = args.prefix_budget_s if prefix else 0.0
        sweep_s = max(left - prefix_s - 20, 10)
        command = sweep_command(
            args,
            server.base,
            model_id,
            concurrency,
            sweep_s,
            args.out_dir / f"{name}.json",
            name,
            sweep_extra,
        )
        info["sweep_rc"] = run_child(command, sweep_s + 30, args.out_dir / f"{name}.sweep.log")
        if prefix:
            left = budget - (time.monotonic() - start)
            command = [
                sys.executable,
                str(HERE / "load_sweep.py"),
                "--url",
                server.base,
                "--model",
                model_id,
                "--tokenizer",
                str(args.model),
                "--prefix-test",
                "--prefix-tokens",
                str(args.prefix_tokens),
                "--timeout",
                str(args.level_timeout),
                "--label",
                f"{name}_prefix",
                "--out",
                str(args.out_dir / f"{name}_prefix.json"),
                *sweep_extra,
            ]
            info["prefix_rc"] = run_child(
                command, max(min(left, prefix_s + 15), 15), args.out_dir / f"{name}.prefix.log"
            )


def build_model(args: argparse.Namespace) -> None:
    if (args.model / "config.json").is_file():
        log(f"model {args.model} exists: not rebuilt")
        return
    if not args.tokenizer:
        raise SystemExit("--build-shape needs --tokenizer")
    command = [
        sys.executable,
        str(HERE / "make_random_model.py"),
        str(args.model),
        "--shape",
        args.build_shape,
        "--tokenizer",
        str(args.tokenizer),
        "--dtype",
        args.build_dtype,
    ]
    log(f"$ {shlex.join(command)}")
    subprocess.run(command, check=True, cwd=REPO)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
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
    args = parser.parse_args(argv)
    args.model = args.model.resolve()
    args.out_dir = args.out_dir.resolve()
    args.manager_src = args.manager_src.resolve()
    if not (args.manager_src / "mlx_manager" / "__init__.py").is_file():
        parser.error(f"no mlx_manager package in {args.manager_src}")
    if args.tokenizer is not None:
        args.tokenizer = args.tokenizer.resolve()
    args.phase_list = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phase_list) - {"ceiling", "mlx_lm", "manager"}
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock = Clock(args.total_budget_s)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.build_shape:
        build_model(args)
    phases: dict[str, dict[str, Any]] = {}
    sweep_extra = shlex.split(args.sweep_args)
    for phase in args.phase_list:
        info: dict[str, Any] = {"started_s": round(time.monotonic() - clock.start, 1)}
        phases[phase] = info
        log(f"phase {phase}: {clock.left():.0f}s of the total budget left")
        if phase == "ceiling":
            phase_ceiling(args, clock, info)
        elif phase == "mlx_lm":
            port = free_port()
            command = [sys.executable, "-m", "mlx_lm.server", "--model", str(args.model)]
            command += ["--port", str(port), *shlex.split(args.mlx_lm_args)]
            phase_server(
                args,
                clock,
                info,
                "mlx_lm",
                command,
                port,
                args.mlx_lm_concurrency,
                args.mlx_lm_budget_s,
                "default_model",
                sweep_extra,
                args.mlx_lm_prefix,
            )
        else:
            port = free_port()
            command = [sys.executable, "-m", "mlx_manager.cli", "serve", "--model", str(args.model)]
            command += ["--port", str(port), *shlex.split(args.manager_args)]
            phase_server(
                args,
                clock,
                info,
                "manager",
                command,
                port,
                args.manager_concurrency,
                args.manager_budget_s,
                None,
                sweep_extra,
                True,
            )
        info["took_s"] = round(time.monotonic() - clock.start - info["started_s"], 1)
    summary, table = summarize(args.out_dir, phases)
    summary["settings"] = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k != "phase_list"
    }
    summary["total_s"] = round(time.monotonic() - clock.start, 1)
    summary["manager_source"] = source_info(args.manager_src)
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out_dir / "summary.txt").write_text(table + "\n")
    print(table)
    log(f"done in {summary['total_s']:.0f}s; wrote {args.out_dir}/summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

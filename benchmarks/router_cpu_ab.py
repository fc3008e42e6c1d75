"""A router's CPU per request on a canned upstream: variants of the code side by side.

    python benchmarks/router_cpu_ab.py [--blocks 30] [--block 200] [--out DIR] \\
        NAME=SRC_DIR[:extra serve flags] NAME=SRC_DIR ...

Each variant is an MLX Manager router importing mlx_manager from SRC_DIR (a `git archive` of
a commit, or the work tree) with router_overhead.py's config (filler rules, then `bench-exact`)
routing to one canned upstream
(benchmarks/lib/canned_upstream.py: answers at next to no CPU, so nothing of an upstream's
work is in the figure). One sequential client sends the same non-streamed chat completion in
blocks of --block requests to each router in turn (the order reversed every other block, so
drift falls on all alike); a router's CPU time over a block (/proc/PID/task/*/schedstat: all
its threads) divided by the block's requests is one sample. Reported: each variant's median,
quartiles and ratio to the first variant's median, and the client's wall time per request.
Quieter than router_overhead.py's latency figures (no upstream on the same cores), which is
why it was used to pick the changes of issue 16; the issue's own figure stays router_overhead.py.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks.lib.machine import machine_info, process_cpu_s
from benchmarks.lib.output import logger, timestamp, write_json, write_report
from benchmarks.lib.processes import free_port
from benchmarks.lib.server import ServerProcess
from benchmarks.router_overhead import router_config

log = logger("router_cpu_ab", clock=True)
BODY = {
    "model": "bench-exact",
    "messages": [{"role": "user", "content": "Name a colour."}],
    "max_tokens": 1,
    "temperature": 0,
}
WARMUP = 100
FILLER_RULES = 10  # of each kind, as router_overhead.py's default


def parse_variant(text: str) -> tuple[str, Path, list[str]]:
    name, _, rest = text.partition("=")
    src, _, flags = rest.partition(":")
    if not name or not src:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=SRC_DIR[:flags]")
    return name, Path(src).resolve(), flags.split()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    port = free_port()
    canned = [sys.executable, "-m", "benchmarks.lib.canned_upstream", str(port)]
    samples: dict[str, list[float]] = {name: [] for name, _, _ in args.variants}
    walls: dict[str, list[float]] = {name: [] for name, _, _ in args.variants}
    with contextlib.ExitStack() as stack:
        upstream = subprocess.Popen(canned, cwd=Path(__file__).resolve().parents[1])
        stack.callback(upstream.kill)
        config_path = out / "router_config.json"
        # router_overhead.py's rule table: the same lookups before `bench-exact` matches.
        write_json(config_path, router_config(f"http://127.0.0.1:{port}", "m", FILLER_RULES))
        routers: dict[str, ServerProcess] = {}
        for name, src, flags in args.variants:
            empty = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            serve = ["--config", str(config_path), "--model-dir", str(empty), *flags]
            routers[name] = stack.enter_context(
                ServerProcess.manager(None, out / f"{name}.log", serve, src=src)
            )
        clients: dict[str, httpx.Client] = {}
        for name, router in routers.items():
            router.wait_health(args.start_timeout)
            clients[name] = stack.enter_context(httpx.Client(base_url=router.base, timeout=30))
            for _ in range(WARMUP):
                reply = clients[name].post("/v1/chat/completions", json=BODY)
                if reply.status_code != 200:
                    raise SystemExit(f"{name}: {reply.status_code} {reply.text[:300]}")
        log(f"{len(routers)} router(s) ready; {args.blocks} blocks of {args.block}")
        names = [name for name, _, _ in args.variants]
        for block in range(args.blocks):
            for name in names if block % 2 == 0 else names[::-1]:
                before = process_cpu_s(routers[name].pid)
                start = time.perf_counter()
                for _ in range(args.block):
                    clients[name].post("/v1/chat/completions", json=BODY)
                wall = time.perf_counter() - start
                after = process_cpu_s(routers[name].pid)
                if before is None or after is None:
                    raise SystemExit(f"{name}: its CPU time is unreadable")
                samples[name].append((after["cpu_s"] - before["cpu_s"]) * 1000 / args.block)
                walls[name].append(wall * 1000 / args.block)
    return {"cpu_ms_per_request": samples, "client_wall_ms_per_request": walls}


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"router_cpu_ab: {result['time']}; {m['platform']}, {m['cpu_count']} cores, "
        f"{m.get('gpu') or 'no GPU'}, event loop {m.get('event_loop', '?')}",
        f"{result['settings']['blocks']} blocks of {result['settings']['block']} non-streamed "
        "requests per variant, canned upstream; router CPU (all threads) per request",
        "",
        f"{'variant':<12} {'median':>7} {'p25':>6} {'p75':>6} {'ratio':>6} {'wall':>6}  source",
    ]
    first: float | None = None
    for variant in result["variants"]:
        cpu = sorted(result["cpu_ms_per_request"][variant["name"]])
        median = statistics.median(cpu)
        first = first or median
        wall = statistics.median(result["client_wall_ms_per_request"][variant["name"]])
        lines.append(
            f"{variant['name']:<12} {median:7.3f} {cpu[len(cpu) // 4]:6.3f} "
            f"{cpu[3 * len(cpu) // 4]:6.3f} {median / first:5.2f}x {wall:6.3f}  "
            f"{variant['src']} {' '.join(variant['flags'])}".rstrip()
        )
    lines.append("(ms; ratio: to the first variant's median; wall: the client's, per request)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", type=parse_variant, help="NAME=SRC_DIR[:flags]")
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--block", type=int, default=200, help="requests per block")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/router_cpu_ab"))
    parser.add_argument("--start-timeout", type=float, default=120.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()  # the routers run in their source directories
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "router_cpu_ab",
        "time": timestamp(),
        "settings": {"blocks": args.blocks, "block": args.block, "warmup": WARMUP},
        "variants": [
            {"name": name, "src": str(src), "flags": flags} for name, src, flags in args.variants
        ],
    }
    result.update(measure(args))
    result["machine"] = machine_info()
    write_report(args.out, "router_cpu_ab", result, table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

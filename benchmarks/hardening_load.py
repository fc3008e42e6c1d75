"""Load and attack benchmark of issue 14's acceptance: holding, recovering, shedding, defending.

    python benchmarks/hardening_load.py --model MODEL_DIR [--out DIR] [--budget-s 420] \
        [--streams 256] [--cancel-streams 150] [--burst 128] [--idle-connections 2000] \
        [--giants 4] [--giant-mib 15] [--probes 10] [--kv-cache-gb 0.5]

Loopback only; two MLX Manager servers are started from this checkout (the `ServerProcess`
manager), each phase is time-boxed and the whole run stops within --budget-s.

Server A (`--max-num-seqs 256 --max-waiting-requests 1024`, the defaults, written out; and
`--header-timeout 60` so that the idle connections of phase 4 outlive its measurement):

1. streams: --streams streaming chat requests at once (every stop id banned by logit_bias,
   so each must stream exactly --stream-tokens tokens). A failure is any non-200, a
   connection error, a timeout, an error event, a stream without [DONE] or without a
   finish_reason, or a short one. Target: 0 failures.
2. cancellation: the idle TTFT (median of --probes sequential requests, each on a fresh
   connection), then --cancel-streams streams opened at once with a long max_tokens; once
   every one has its first token, all connections are closed. Recovery = the time from the
   close until /v1/queue/stats shows running == 0 and waiting == 0; then the TTFT of a fresh
   request right away (and the median of --probes) against the idle one.
4. attack: the idle TTFT again, then in a separate process --idle-connections TCP connections
   (half silent, half with half a request line) and --giants workers each keeping one
   ~--giant-mib MiB chat prompt in flight (the next sent as soon as the last is answered; the
   server refuses them with 413 before parsing them, a body too large for the model's bound,
   or with 400 by length after parsing where the model has no bound), while --probes TTFTs
   are measured one after the other. Target: median TTFT under attack <= 2x idle. The report says how many idle
   connections were still open at the end and every giant's status.

Server B (`--max-waiting-requests 8 --max-num-seqs 4`):

3. shed: --burst connections opened first, then one request written on each in one loop
   (half OpenAI /v1/chat/completions, half Anthropic /v1/messages, interleaved, streaming).
   Admitted = 200 with a complete stream; shed = 503 (OpenAI) / 529 (Anthropic). Targets:
   every refusal is a shed of the right status with a Retry-After header; no other status.

Writes `hardening_load.json` and `hardening_load.txt` (the table) under --out, with the
servers' logs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.attack import Attack, AttackPlan
from benchmarks.lib.environment import REPO
from benchmarks.lib.load import (
    Burst,
    cancel_after_first_token,
    queue_stats,
    require_finish,
    run_burst,
    sequential_ttfts,
    summarize,
    wait_queue_empty,
)
from benchmarks.lib.machine import machine_info, process_memory_mib, source_info
from benchmarks.lib.output import fmt, fmt_ms, logger, timestamp, write_report
from benchmarks.lib.processes import stop_on_sigterm
from benchmarks.lib.prompts import PromptBuilder
from benchmarks.lib.rawhttp import RawReply, json_request, simultaneous
from benchmarks.lib.server import ServerProcess
from benchmarks.lib.sse import RequestRecord, Target, anthropic_payload
from benchmarks.lib.stats import Budget, median_or_none, ratio

log = logger("hardening_load", clock=True)

HOST = "127.0.0.1"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
SHED_STATUS = {"openai": 503, "anthropic": 529}


# ---------------------------------------------------------------- helpers


async def boxed(name: str, coro: Coroutine[Any, Any, dict[str, Any]], box_s: float) -> Any:
    """A phase within its time box; its result, or what stopped it."""
    log(f"{name}: time box {box_s:.0f}s")
    try:
        return await asyncio.wait_for(coro, box_s)
    except TimeoutError:
        log(f"{name}: stopped by its time box")
        return {"error": f"time box of {box_s:.0f}s reached"}


def ttft_figures(records: list[RequestRecord]) -> dict[str, Any]:
    ttfts = [r.ttft for r in records if r.error is None and r.ttft is not None]
    return {
        "ttft_median_s": median_or_none(ttfts),
        "ttft_max_s": max(ttfts, default=None),
        "ttfts_s": [round(t, 4) for t in ttfts],
        "failed": [f"{r.error}: {r.detail}"[:200] for r in records if r.error is not None],
    }


async def idle_ttft(target: Target, builder: PromptBuilder, args: argparse.Namespace, tag: str):
    prompts = builder.prompts(args.probes, args.prompt_tokens, tag)
    records = await sequential_ttfts(target, prompts, args.probe_tokens, args.timeout)
    return ttft_figures(records)


# ---------------------------------------------------------------- 1. streams held


async def phase_streams(
    target: Target, builder: PromptBuilder, args: argparse.Namespace, box_s: float
) -> dict[str, Any]:
    n = args.streams
    prompts = builder.prompts(n, args.prompt_tokens, "streams")
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    timeout = httpx.Timeout(box_s, connect=box_s)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        burst = Burst(prompts, n, args.stream_tokens, timeout=box_s, deadline_s=box_s - 5)
        done = await run_burst(client, target, burst)
    require_finish(done.records)
    summary = summarize(done.records, done.wall, n, args.stream_tokens)
    summary["failed_detail"] = [r.to_json() for r in done.records if r.error][:10]
    log(f"streams: {summary['ok']}/{n} ok, failures {summary['failures']}, {done.wall:.1f}s")
    return summary


# ---------------------------------------------------------------- 2. cancellation


async def phase_cancel(
    target: Target, builder: PromptBuilder, args: argparse.Namespace, box_s: float
) -> dict[str, Any]:
    idle = await idle_ttft(target, builder, args, "cancel-idle")
    async with httpx.AsyncClient() as client:
        before = await queue_stats(client, target.base)
    prompts = builder.prompts(args.cancel_streams, args.prompt_tokens, "cancel")
    cancelled = await cancel_after_first_token(target, prompts, args.cancel_tokens, box_s / 3)
    recovery_s, after = await wait_queue_empty(target.base, box_s / 3, cancelled.cancelled_at)
    fresh_prompts = builder.prompts(args.probes, args.prompt_tokens, "cancel-fresh")
    fresh = ttft_figures(
        await sequential_ttfts(target, fresh_prompts, args.probe_tokens, args.timeout)
    )
    records = cancelled.records
    result = {
        "streams": len(records),
        "max_tokens": args.cancel_tokens,
        "had_first_token": sum(r.first is not None for r in records),
        "failed_before_cancel": dict(Counter(r.error for r in records if r.error and r.first)),
        "first_tokens_s": cancelled.first_tokens_s,
        "recovery_s": recovery_s,
        "aborted_delta": after.get("aborted_requests", 0) - before["aborted_requests"],
        "finished_delta": after.get("finished_requests", 0) - before["finished_requests"],
        "stats_after": after,
        "idle": idle,
        "fresh": fresh,
        "fresh_first_ttft_s": fresh["ttfts_s"][0] if fresh["ttfts_s"] else None,
        "fresh_over_idle": ratio(fresh["ttft_median_s"], idle["ttft_median_s"]),
    }
    log(
        f"cancel: {result['had_first_token']}/{len(records)} had a first token; recovery "
        f"{fmt(recovery_s, 3)}s; fresh TTFT {fmt_ms(fresh['ttft_median_s'])} ms vs idle "
        f"{fmt_ms(idle['ttft_median_s'])} ms"
    )
    return result


# ---------------------------------------------------------------- 3. shed under a burst


def shed_requests(target: Target, builder: PromptBuilder, args: argparse.Namespace) -> list:
    prompts = builder.prompts(args.burst, args.prompt_tokens, "burst")
    requests = []
    for i, prompt in enumerate(prompts):
        if i % 2 == 0:
            body = target.payload(prompt, args.burst_tokens)
            requests.append(json_request(target.path, body, "openai"))
        else:
            body = anthropic_payload(target.model, prompt.text, args.burst_tokens)
            requests.append(json_request("/v1/messages", body, "anthropic", ANTHROPIC_HEADERS))
    return requests


def classify(reply: RawReply) -> str:
    """admitted | admitted_incomplete | shed | shed_no_retry_after | other"""
    if reply.status == 200:
        end = b"[DONE]" if reply.tag == "openai" else b"message_stop"
        return "admitted" if end in reply.body else "admitted_incomplete"
    if reply.status == SHED_STATUS[reply.tag]:
        return "shed" if "retry-after" in reply.headers else "shed_no_retry_after"
    return "other"


async def phase_shed(
    target: Target, builder: PromptBuilder, args: argparse.Namespace, box_s: float
) -> dict[str, Any]:
    port = int(target.base.rsplit(":", 1)[1])
    requests = shed_requests(target, builder, args)
    replies, spread = await simultaneous(HOST, port, requests, box_s / 2)
    kinds = [classify(r) for r in replies]
    by_api: dict[str, Counter[str]] = {"openai": Counter(), "anthropic": Counter()}
    for reply, kind in zip(replies, kinds, strict=True):
        by_api[reply.tag][kind] += 1
    odd = [r for r, k in zip(replies, kinds, strict=True) if k not in ("admitted", "shed")]
    recovery_s, after = await wait_queue_empty(target.base, box_s / 4)
    shed = [r for r, k in zip(replies, kinds, strict=True) if k.startswith("shed")]
    result = {
        "requests": len(replies),
        "writes_spread_s": spread,
        "admitted": kinds.count("admitted"),
        "admitted_incomplete": kinds.count("admitted_incomplete"),
        "shed": kinds.count("shed") + kinds.count("shed_no_retry_after"),
        "shed_without_retry_after": kinds.count("shed_no_retry_after"),
        "other": kinds.count("other"),
        "by_api": {api: dict(c) for api, c in by_api.items()},
        "statuses": dict(Counter(f"{r.tag} {r.status or r.error}" for r in replies)),
        "retry_after_values": sorted({r.headers.get("retry-after", "") for r in shed}),
        "shed_elapsed_max_s": max((r.elapsed_s or 0 for r in shed), default=None),
        "odd_detail": [
            {"tag": r.tag, "status": r.status, "error": r.error, "body": r.text()} for r in odd
        ][:10],
        "queue_empty_after_s": recovery_s,
        "stats_after": after,
    }
    log(
        f"shed: {result['admitted']} admitted, {result['shed']} shed "
        f"({result['shed_without_retry_after']} without Retry-After), {result['other']} other"
    )
    return result


# ---------------------------------------------------------------- 4. TTFT under attack


async def under_attack(
    target: Target, args: argparse.Namespace, plan: AttackPlan, tag: str
) -> dict[str, Any]:
    """--probes TTFTs, one after the other, while `plan`'s attacker runs."""
    prompts = args.builder.prompts(args.probes, args.prompt_tokens, f"attack:{tag}")
    started = time.perf_counter()
    with Attack(plan) as attack:
        ready_s = time.perf_counter() - started
        records = await sequential_ttfts(
            target, prompts, args.probe_tokens, args.timeout, gap_s=args.probe_gap_s
        )
        window_s = time.perf_counter() - started
    return {
        **ttft_figures(records),
        "idle_connections": plan.idle,
        "giants": plan.giants,
        "attack_ready_s": ready_s,
        "window_s": window_s,
        "attacker": attack.report,
    }


async def phase_attack(
    target: Target, builder: PromptBuilder, args: argparse.Namespace, box_s: float
) -> dict[str, Any]:
    """The idle TTFT, then under the whole attack, then under each half of it alone."""
    idle = await idle_ttft(target, builder, args, "attack-idle")
    port = int(target.base.rsplit(":", 1)[1])
    n, giants = args.idle_connections, args.giants
    parts = {"both": (n, giants), "connections_only": (n, 0), "giants_only": (0, giants)}
    result: dict[str, Any] = {"idle": idle}
    for name, (idle_n, giants_n) in parts.items():
        if name != "both" and not args.attack_parts:
            continue
        plan = AttackPlan(HOST, port, idle_n, giants_n, args.giant_mib, target.model)
        part = await under_attack(target, args, plan, name)
        part["ratio"] = ratio(part["ttft_median_s"], idle["ttft_median_s"])
        result[name] = part
        log(
            f"attack {name}: TTFT {fmt_ms(part['ttft_median_s'])} ms vs idle "
            f"{fmt_ms(idle['ttft_median_s'])} ms (x{fmt(part['ratio'], 2)})"
        )
    result["idle_after"] = await idle_ttft(target, builder, args, "attack-idle-after")
    result["under_attack"], result["ratio"] = result["both"], result["both"]["ratio"]
    return result


# ---------------------------------------------------------------- servers


def server_flags(args: argparse.Namespace, *extra: str) -> list[str]:
    return ["--kv-cache-gb", str(args.kv_cache_gb), *extra]


async def main_server_phases(
    target: Target, pid: int, builder: PromptBuilder, args: argparse.Namespace, budget: Budget
) -> dict[str, Any]:
    warm = builder.prompts(4, args.prompt_tokens, "warm")
    await sequential_ttfts(target, warm, args.probe_tokens, args.timeout)
    phases: dict[str, Any] = {}
    reserve = args.shed_box_s + 30  # server B's phase still to come
    boxes = (
        ("streams", phase_streams, args.streams_box_s),
        ("cancellation", phase_cancel, args.cancel_box_s),
        ("attack", phase_attack, args.attack_box_s),
    )
    for name, phase, wanted in boxes:
        box = budget.budget(wanted, reserve)
        if box < 10:
            phases[name] = {"error": f"budget ({budget.left():.0f}s left)"}
            continue
        phases[name] = await boxed(name, phase(target, builder, args, box), box)
        phases[name]["server_memory_mib"] = process_memory_mib(pid)
    return phases


def make_target(base: str, model: str, builder: PromptBuilder) -> Target:
    return Target(
        base=base,
        model=model,
        endpoint="chat",
        prompt_format="text",
        temperature=0.0,
        eos_ids=tuple(builder.eos_ids()),
        usage=True,
    )


def run_on_server(
    args: argparse.Namespace,
    name: str,
    flags: list[str],
    phases: Any,  # (Target, pid) -> coroutine of the phases' results
) -> dict[str, Any]:
    """Start server `name` with `flags`, run `phases` against it, stop it."""
    with ServerProcess.manager(args.model, args.out / f"{name}.log", flags) as server:
        models = server.wait_health(args.start_timeout)
        model = models[0] if models else args.model.name
        log(f"{name}: ready in {server.ready_s:.1f}s, model {model!r}, flags {flags}")
        target = make_target(server.base, model, args.builder)
        results: dict[str, Any] = asyncio.run(phases(target, server.pid))
        memory = process_memory_mib(server.pid)
    return {"server": {"flags": flags, "ready_s": server.ready_s, "memory_mib": memory}, **results}


# ---------------------------------------------------------------- report


def targets_of(phases: dict[str, Any], args: argparse.Namespace) -> dict[str, bool | None]:
    streams, shed, attack = (
        phases.get("streams", {}),
        phases.get("shed", {}),
        phases.get("attack", {}),
    )
    return {
        "streams_0_failures": streams.get("failed") == 0 if "failed" in streams else None,
        "shed_all_with_retry_after": (
            shed.get("shed_without_retry_after") == 0 and shed.get("other") == 0
            if "shed" in shed
            else None
        ),
        "attack_ttft_within_2x": (
            attack["ratio"] <= args.attack_ratio_target if attack.get("ratio") else None
        ),
    }


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def table(result: dict[str, Any]) -> str:
    p, t = result["phases"], result["targets"]
    s, c, b, a = (p.get(k, {}) for k in ("streams", "cancellation", "shed", "attack"))
    rows = [("phase", "figure", "value", "target", "met")]
    rows += streams_rows(s, t) + cancel_rows(c) + shed_rows(b, t) + attack_rows(a, t)
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


Row = tuple[str, str, str, str, str]


def streams_rows(s: dict[str, Any], t: dict[str, Any]) -> list[Row]:
    if "failed" not in s:
        return [("streams", "error", str(s.get("error")), "", "")]
    failures = ", ".join(f"{k} {v}" for k, v in s["failures"].items()) or "none"
    return [
        (
            f"1. {s['concurrency']} streams at once",
            "completed / failed",
            f"{s['ok']} / {s['failed']}",
            "0 failed",
            yes_no(t["streams_0_failures"]),
        ),
        ("", "failures", failures, "", ""),
        (
            "",
            "wall s, TTFT p50 / max ms",
            f"{fmt(s['wall_s'])}, {fmt_ms(s['ttft_p50_s'], 0)} / {fmt_ms(s['ttft_max_s'], 0)}",
            "",
            "",
        ),
    ]


def cancel_rows(c: dict[str, Any]) -> list[Row]:
    if "streams" not in c:
        return [("cancellation", "error", str(c.get("error")), "", "")]
    return [
        (
            f"2. {c['streams']} streams cancelled",
            "had first token / aborted by server",
            f"{c['had_first_token']} / {c['aborted_delta']}",
            "",
            "",
        ),
        ("", "recovery to running=0, waiting=0", f"{fmt(c['recovery_s'], 3)} s", "", ""),
        (
            "",
            "TTFT idle / fresh first / fresh median",
            f"{fmt_ms(c['idle']['ttft_median_s'])} / {fmt_ms(c['fresh_first_ttft_s'])} / "
            f"{fmt_ms(c['fresh']['ttft_median_s'])} ms",
            "",
            "",
        ),
        ("", "fresh / idle", f"{fmt(c['fresh_over_idle'], 2)}x", "", ""),
    ]


def shed_rows(b: dict[str, Any], t: dict[str, Any]) -> list[Row]:
    if "shed" not in b:
        return [("shed", "error", str(b.get("error")), "", "")]
    statuses = ", ".join(f"{k} x{v}" for k, v in sorted(b["statuses"].items()))
    return [
        (
            f"3. burst of {b['requests']}",
            "admitted / shed / other",
            f"{b['admitted']} / {b['shed']} / {b['other'] + b['admitted_incomplete']}",
            "",
            "",
        ),
        (
            "",
            "shed lacking Retry-After / other status",
            f"{b['shed_without_retry_after']} / {b['other']}",
            "0 / 0",
            yes_no(t["shed_all_with_retry_after"]),
        ),
        ("", "statuses", statuses, "", ""),
    ]


def attack_rows(a: dict[str, Any], t: dict[str, Any]) -> list[Row]:
    if "under_attack" not in a:
        return [("attack", "error", str(a.get("error")), "", "")]
    report = a["under_attack"].get("attacker") or {}
    giants = report.get("giants", {})
    idle_state = report.get("idle_at_stop", {})
    return [
        (
            "4. TTFT under attack",
            "TTFT idle / under attack (median ms)",
            f"{fmt_ms(a['idle']['ttft_median_s'])} / {fmt_ms(a['under_attack']['ttft_median_s'])}",
            "",
            "",
        ),
        ("", "ratio", f"{fmt(a['ratio'], 2)}x", "<= 2x", yes_no(t["attack_ttft_within_2x"])),
        *(
            (
                "",
                f"ratio, {name.replace('_', ' ')}",
                f"{fmt(a[name]['ratio'], 2)}x ({fmt_ms(a[name]['ttft_median_s'])} ms)",
                "",
                "",
            )
            for name in ("connections_only", "giants_only")
            if name in a
        ),
        ("", "TTFT idle after (median ms)", fmt_ms(a["idle_after"]["ttft_median_s"]), "", ""),
        (
            "",
            "idle connections at the end",
            ", ".join(f"{k} {v}" for k, v in idle_state.items()),
            "",
            "",
        ),
        (
            "",
            "giant requests (status x count)",
            ", ".join(f"{k} x{v}" for k, v in giants.get("statuses", {}).items())
            + f" (answered in {fmt_ms(giants.get('elapsed_p50_s'), 0)} ms p50)",
            "",
            "",
        ),
    ]


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model", type=Path, required=True, help="model directory (its tokenizer too)")
    add("--out", type=Path, default=REPO / "benchmarks" / "results" / "hardening_load")
    add("--budget-s", type=float, default=420.0, help="the whole run")
    add("--kv-cache-gb", type=float, default=0.5)
    add("--prompt-tokens", type=int, default=32)
    add("--timeout", type=float, default=60.0, help="one probe request")
    add("--streams", type=int, default=256)
    add("--stream-tokens", type=int, default=16)
    add("--streams-box-s", type=float, default=150.0)
    add("--cancel-streams", type=int, default=150)
    add("--cancel-tokens", type=int, default=2048, help="max_tokens of a cancelled stream")
    add("--cancel-box-s", type=float, default=90.0)
    add("--burst", type=int, default=128)
    add("--burst-tokens", type=int, default=8)
    add("--shed-max-waiting", type=int, default=8)
    add("--shed-max-seqs", type=int, default=4)
    add("--shed-box-s", type=float, default=60.0)
    add("--probes", type=int, default=10, help="TTFT samples per figure")
    add("--probe-tokens", type=int, default=4)
    add("--probe-gap-s", type=float, default=0.2, help="between probes under attack")
    add("--idle-connections", type=int, default=2000)
    add("--giants", type=int, default=4)
    add("--giant-mib", type=float, default=15.0)
    add("--header-timeout", type=float, default=60.0, help="server A's --header-timeout")
    add("--attack-box-s", type=float, default=50.0, help="< --header-timeout")
    add("--attack-ratio-target", type=float, default=2.0)
    add(
        "--attack-parts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also each half of the attack alone",
    )
    add("--start-timeout", type=float, default=120.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    budget = Budget(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    args.builder = PromptBuilder(args.model)
    result: dict[str, Any] = {"benchmark": "hardening_load", "time": timestamp()}
    result["settings"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "builder"
    }
    flags_a = server_flags(
        args,
        "--max-num-seqs",
        "256",
        "--max-waiting-requests",
        "1024",
        "--header-timeout",
        str(args.header_timeout),
    )
    server_a = run_on_server(
        args,
        "server_a",
        flags_a,
        lambda target, pid: main_server_phases(target, pid, args.builder, args, budget),
    )
    flags_b = server_flags(
        args,
        "--max-num-seqs",
        str(args.shed_max_seqs),
        "--max-waiting-requests",
        str(args.shed_max_waiting),
    )

    async def shed(target: Target, pid: int) -> dict[str, Any]:
        box = budget.budget(args.shed_box_s)
        return {"shed": await boxed("shed", phase_shed(target, args.builder, args, box), box)}

    server_b = run_on_server(args, "server_b", flags_b, shed)
    result["phases"] = {
        **{k: v for k, v in server_a.items() if k != "server"},
        "shed": server_b["shed"],
    }
    result["servers"] = {"a": server_a["server"], "b": server_b["server"]}
    result["targets"] = targets_of(result["phases"], args)
    result["machine"] = machine_info()
    result["source"] = source_info(REPO)
    result["elapsed_s"] = budget.elapsed()
    write_report(args.out, "hardening_load", result, table(result))
    log(f"wrote {args.out} in {budget.elapsed():.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

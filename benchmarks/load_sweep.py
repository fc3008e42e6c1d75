"""Load generator: sweep client concurrency against any OpenAI-compatible server (streaming).

    python benchmarks/load_sweep.py --url http://127.0.0.1:8080 --tokenizer MODEL_DIR \
        [--model auto] [--endpoint completions|chat] [--prompt-format text|ids] \
        [--concurrency 1,8,32,64,128,256] [--requests-per-level N] [--prompt-tokens 512] \
        [--max-tokens 128] [--temperature 0] [--eos-ids auto|none|ID,ID] \
        [--warmup burst|one|none] [--timeout 600] [--level-timeout 300] [--budget-s S] \
        [--out FILE.json]

    python benchmarks/load_sweep.py --url ... --tokenizer MODEL_DIR --prefix-test \
        [--prefix-tokens 2048] [--suffix-tokens 32] [--prefix-runs 3] [--out FILE.json]

Each level C is a closed loop: C workers start at once and each sends its next request as soon
as its previous one ends, until --requests-per-level requests (default max(C, 4)) have been
sent, so exactly C are in flight until the queue runs dry. Every prompt is different (seeded
random words), so no request hits another one's prefix cache; the warm-up uses other prompts.

Prompts are text made of single-token words (" word" tokens of the tokenizer that encode back
to themselves), so a prompt of N words is exactly N tokens for every server that uses this
tokenizer; `mlx_lm.server` refuses token-id prompts, so text is the default. `--prompt-format
ids` sends the same token ids instead (MLX Manager accepts them). The prompt token count the
server reports (usage) is recorded per request.

`--eos-ids` bans the stop tokens with `logit_bias` -100, so every request generates exactly
--max-tokens tokens (`auto`: EOS ids from the tokenizer dir's configs plus end-of-turn tokens
such as <|im_end|>). Per request: TTFT (request sent -> first non-empty content chunk), ITL
(gaps between successive non-empty content chunks), TPOT ((last - first content chunk) /
(tokens - 1)), generated tokens (usage.completion_tokens; content chunks when the server sends
no usage). Failures: HTTP status != 200, connection errors/resets, timeouts (per request or the
level's deadline), error events in the stream, and short outputs (fewer than --max-tokens
tokens). Per level: output tok/s = generated tokens of all requests (failed ones' partial
output included) / the level's wall time (first request sent -> last one ended); `ok tok/s`
counts successful requests only.

--prefix-test: after a warm-up request with an unrelated prompt of the same length, request A
(a fresh --prefix-tokens prefix + a --suffix-tokens suffix), then request B (the same prefix +
another suffix), sequentially; reports TTFT A, TTFT B and B/A (goal: <= 0.2), per run and the
median over --prefix-runs runs (a fresh prefix each run).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.load import Burst, run_burst, summarize
from benchmarks.lib.output import fmt, fmt_ms, logger, timestamp, write_json
from benchmarks.lib.prompts import PromptBuilder
from benchmarks.lib.sse import RequestRecord, Target, timed_request

log = logger("load_sweep")


# ---------------------------------------------------------------- one level


async def warm_up(
    client: httpx.AsyncClient,
    target: Target,
    builder: PromptBuilder,
    args: argparse.Namespace,
    concurrency: int,
    deadline_s: float,
) -> dict[str, Any] | None:
    """Before a level: C requests at once (burst), one, or none; their summary."""
    if args.warmup == "none":
        return None
    count = concurrency if args.warmup == "burst" else 1
    prompts = builder.prompts(count, args.prompt_tokens, f"warm:{concurrency}")
    burst = Burst(prompts, count, args.warmup_tokens, args.timeout, deadline_s / 2, args.ramp_s)
    done = await run_burst(client, target, burst)
    warm = summarize(done.records, done.wall, count, args.warmup_tokens)
    log(
        f"  warm-up c={concurrency}: {warm['ok']}/{warm['requests']} ok in {done.wall:.1f}s "
        f"{warm['failures'] or ''}"
    )
    return warm


async def run_level(
    client: httpx.AsyncClient,
    target: Target,
    builder: PromptBuilder,
    args: argparse.Namespace,
    concurrency: int,
    deadline_s: float,
) -> dict[str, Any]:
    """Warm-up, then --requests-per-level requests with `concurrency` in flight."""
    n = args.requests_per_level or max(concurrency, 4)
    level_start = time.perf_counter()
    warm = await warm_up(client, target, builder, args, concurrency, deadline_s)
    remaining = deadline_s - (time.perf_counter() - level_start)
    prompts = builder.prompts(n, args.prompt_tokens, f"level:{concurrency}")
    burst = Burst(
        prompts, concurrency, args.max_tokens, args.timeout, max(remaining, 1.0), args.ramp_s
    )
    done = await run_burst(client, target, burst)
    summary = summarize(done.records, done.wall, concurrency, args.max_tokens)
    summary.update(client_cpu(done.client_cpu_s, done.wall, sum(r.chunks for r in done.records)))
    summary["warmup"] = warm
    summary["deadline_s"] = deadline_s
    if args.keep_requests:
        summary["requests_detail"] = [r.to_json() for r in done.records]
    else:
        summary["failed_detail"] = [r.to_json() for r in done.records if r.error is not None][:20]
    return summary


def client_cpu(cpu_s: float, wall: float, chunks: int) -> dict[str, float | None]:
    """The load generator's own CPU use (near one core, it is the bottleneck)."""
    frac = cpu_s / wall if wall > 0 else None
    if frac and frac > 0.8:
        log(
            f"  warning: the load generator used {frac:.0%} of a core: "
            "it may be the bottleneck at this level"
        )
    return {
        "client_cpu_s": cpu_s,
        "client_cpu_frac": frac,
        "client_cpu_us_per_chunk": cpu_s / chunks * 1e6 if chunks else None,
    }


# ---------------------------------------------------------------- prefix test


async def prefix_run(
    client: httpx.AsyncClient,
    target: Target,
    builder: PromptBuilder,
    args: argparse.Namespace,
    run: int,
) -> dict[str, Any]:
    """A warm-up with an unrelated prompt, then A (prefix + suffix a), then B (+ suffix b)."""
    words = max(1, args.prefix_tokens - builder.specials)
    # Seeded by endpoint and format too: a second test against the same server must not find
    # its prefixes already cached by the first one.
    tag = f"{args.endpoint}:{args.prompt_format}"
    prefix = builder.ids(words, f"prefix:{tag}:{run}")
    requests = (
        ("warmup", builder.ids(words + args.suffix_tokens, f"prefix-warm:{tag}:{run}")),
        ("a", prefix + builder.ids(args.suffix_tokens, f"suffix-a:{tag}:{run}")),
        ("b", prefix + builder.ids(args.suffix_tokens, f"suffix-b:{tag}:{run}")),
    )
    result: dict[str, Any] = {"run": run}
    for name, ids in requests:
        record = RequestRecord(0)
        prompt = builder.prompt(ids)
        await timed_request(client, target, prompt, args.prefix_max_tokens, record, args.timeout)
        result[name] = {
            "ttft_s": record.ttft,
            "prompt_tokens": record.prompt_tokens,
            "cached_tokens": record.cached_tokens,
            "tokens": record.tokens,
            "error": record.error,
            "detail": record.detail,
        }
    ttft_a, ttft_b = result["a"]["ttft_s"], result["b"]["ttft_s"]
    result["ratio_b_over_a"] = ttft_b / ttft_a if ttft_a and ttft_b else None
    log(
        f"  prefix run {run}: TTFT A {fmt_ms(ttft_a)} ms, B {fmt_ms(ttft_b)} ms, "
        f"B/A {fmt(result['ratio_b_over_a'], 3)}; cached B {result['b']['cached_tokens']}"
    )
    return result


async def run_prefix_test(
    client: httpx.AsyncClient, target: Target, builder: PromptBuilder, args: argparse.Namespace
) -> dict[str, Any]:
    runs = [await prefix_run(client, target, builder, args, run) for run in range(args.prefix_runs)]
    ratios = [r["ratio_b_over_a"] for r in runs if r["ratio_b_over_a"] is not None]
    ttft_a = [r["a"]["ttft_s"] for r in runs if r["a"]["ttft_s"] is not None]
    ttft_b = [r["b"]["ttft_s"] for r in runs if r["b"]["ttft_s"] is not None]
    median_ratio = statistics.median(ratios) if ratios else None
    return {
        "prefix_tokens": args.prefix_tokens,
        "suffix_tokens": args.suffix_tokens,
        "max_tokens": args.prefix_max_tokens,
        "runs": runs,
        "ttft_a_median_s": statistics.median(ttft_a) if ttft_a else None,
        "ttft_b_median_s": statistics.median(ttft_b) if ttft_b else None,
        "ratio_b_over_a_median": median_ratio,
        "goal": "ratio <= 0.2",
        "pass": median_ratio is not None and median_ratio <= 0.2,
    }


# ---------------------------------------------------------------- report


def table(levels: list[dict[str, Any]]) -> str:
    header = (
        f"{'conc':>5} {'reqs':>5} {'failed':>6} {'tok/s':>9} {'ok tok/s':>9} {'wall s':>7} "
        f"{'TTFT p50 ms':>12} {'TTFT p99 ms':>12} {'ITL p50 ms':>11} {'ITL p99 ms':>11}  failures"
    )
    lines = [header]
    for lv in levels:
        if lv.get("skipped"):
            lines.append(f"{lv['concurrency']:>5} skipped: {lv['skipped']}")
            continue
        failures = ", ".join(f"{k} {v}" for k, v in sorted(lv["failures"].items()))
        lines.append(
            f"{lv['concurrency']:>5} {lv['requests']:>5} {lv['failed']:>6} "
            f"{fmt(lv['output_tok_s']):>9} {fmt(lv['ok_output_tok_s']):>9} "
            f"{fmt(lv['wall_s']):>7} {fmt_ms(lv['ttft_p50_s']):>12} "
            f"{fmt_ms(lv['ttft_p99_s']):>12} {fmt_ms(lv['itl_p50_s']):>11} "
            f"{fmt_ms(lv['itl_p99_s']):>11}  {failures}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


async def model_id(client: httpx.AsyncClient, base: str, model: str) -> str:
    """`model`, or with `auto` the first id the server lists."""
    if model != "auto":
        return model
    response = await client.get(base + "/v1/models", timeout=30)
    response.raise_for_status()
    data = response.json().get("data") or []
    if not data:
        raise SystemExit(f"{base}/v1/models lists no model; pass --model")
    return str(data[0]["id"])


def banned_ids(args: argparse.Namespace, builder: PromptBuilder) -> list[int]:
    if args.eos_ids == "auto":
        return builder.eos_ids()
    if args.eos_ids == "none":
        return []
    return [int(x) for x in args.eos_ids.split(",") if x.strip()]


def settings_of(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    return {
        "url": target.base + target.path,
        "model": target.model,
        "endpoint": args.endpoint,
        "prompt_format": args.prompt_format,
        "prompt_tokens": args.prompt_tokens,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "banned_ids": list(target.eos_ids),
        "requests_per_level": args.requests_per_level or "max(concurrency, 4)",
        "warmup": args.warmup,
        "warmup_tokens": args.warmup_tokens,
        "timeout_s": args.timeout,
        "ramp_s": args.ramp_s,
        "level_timeout_s": args.level_timeout,
        "budget_s": args.budget_s,
        "tokenizer": str(args.tokenizer),
        "usage_requested": not args.no_usage,
    }


def describe(args: argparse.Namespace, target: Target, builder: PromptBuilder) -> None:
    if args.prefix_test:
        shape = (
            f"prefix test: {args.prefix_tokens}-token prefix + {args.suffix_tokens}-token "
            f"suffixes, max_tokens {args.prefix_max_tokens}"
        )
    else:
        shape = f"prompt {args.prompt_tokens} tokens, max_tokens {args.max_tokens}"
    log(
        f"{target.base}{target.path} model={target.model!r} {shape} ({args.prompt_format}, "
        f"{len(builder.pool)} words, {builder.specials} special), banned ids "
        f"{list(target.eos_ids)}"
    )


async def sweep(
    client: httpx.AsyncClient,
    target: Target,
    builder: PromptBuilder,
    args: argparse.Namespace,
    started: float,
) -> list[dict[str, Any]]:
    """Every --concurrency level in turn, each within --level-timeout and what is left of
    --budget-s (counted from `started`)."""
    levels: list[dict[str, Any]] = []
    for concurrency in args.concurrency:
        spent = time.perf_counter() - started
        left = None if args.budget_s is None else args.budget_s - spent
        if left is not None and left < args.min_level_s:
            levels.append({"concurrency": concurrency, "skipped": f"budget ({left:.0f}s left)"})
            log(f"c={concurrency}: skipped, {left:.0f}s of the budget left")
            continue
        deadline = args.level_timeout if left is None else min(args.level_timeout, left)
        log(f"c={concurrency}: deadline {deadline:.0f}s")
        level = await run_level(client, target, builder, args, concurrency, deadline)
        levels.append(level)
        log(
            f"c={concurrency}: {fmt(level['output_tok_s'])} tok/s, "
            f"{level['failed']}/{level['requests']} failed {level['failures'] or ''}, "
            f"TTFT p50 {fmt_ms(level['ttft_p50_s'])} ms, wall {level['wall_s']:.1f}s"
        )
    return levels


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    builder = PromptBuilder(args.tokenizer)
    if args.prompt_format == "ids":
        builder.specials = 0  # ids go to the model as they are: no BOS added by the server
    base = args.url.rstrip("/").removesuffix("/v1")
    most = max([*args.concurrency, 1])
    limits = httpx.Limits(max_connections=most + 8, max_keepalive_connections=most + 8)
    timeout = httpx.Timeout(args.timeout, connect=60.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        target = Target(
            base=base,
            model=await model_id(client, base, args.model),
            endpoint=args.endpoint,
            prompt_format=args.prompt_format,
            temperature=args.temperature,
            eos_ids=tuple(banned_ids(args, builder)),
            usage=not args.no_usage,
        )
        describe(args, target, builder)
        result: dict[str, Any] = {
            "benchmark": "load_sweep",
            "time": timestamp(),
            "label": args.label,
            "machine": {"platform": platform.platform(), "python": platform.python_version()},
            "settings": settings_of(args, target),
            "levels": [],
        }
        if args.prefix_test:
            result["prefix_test"] = await run_prefix_test(client, target, builder, args)
            return result
        result["levels"] = await sweep(client, target, builder, args, started)
    result["table"] = table(result["levels"])
    return result


def add_load_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", default="1,8,32,64,128,256")
    parser.add_argument("--requests-per-level", type=int, default=0, help="0: max(concurrency, 4)")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument(
        "--eos-ids",
        default="auto",
        help="ids banned with logit_bias -100 so every request runs to --max-tokens: "
        "auto (from the tokenizer dir), none, or a comma-separated list",
    )
    parser.add_argument(
        "--warmup",
        choices=("burst", "one", "none"),
        default="burst",
        help="before each level: C requests at once (warms the batch shapes), one, or none",
    )
    parser.add_argument("--warmup-tokens", type=int, default=8, help="max_tokens of warm-ups")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-request seconds")
    parser.add_argument(
        "--level-timeout", type=float, default=300.0, help="seconds per level, warm-up included"
    )
    parser.add_argument("--budget-s", type=float, default=None, help="seconds for all levels")
    parser.add_argument(
        "--min-level-s", type=float, default=20.0, help="skip a level with less budget left"
    )
    parser.add_argument(
        "--ramp-s",
        type=float,
        default=0.0,
        help="spread the C workers' first requests over this many seconds (0: all at once)",
    )


def add_target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    parser.add_argument(
        "--model",
        default="auto",
        help="model field of each request; auto: the first id of /v1/models "
        "(use default_model for mlx_lm.server)",
    )
    parser.add_argument(
        "--tokenizer", type=Path, required=True, help="dir with the served model's tokenizer"
    )
    parser.add_argument("--endpoint", choices=("completions", "chat"), default="completions")
    parser.add_argument(
        "--prompt-format",
        choices=("text", "ids"),
        default="text",
        help="completions prompt as text (any server) or token ids (not mlx_lm.server)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_target_args(parser)
    add_load_args(parser)
    parser.add_argument("--no-usage", action="store_true", help="don't send stream_options")
    parser.add_argument("--keep-requests", action="store_true", help="every request in JSON")
    parser.add_argument("--prefix-test", action="store_true")
    parser.add_argument("--prefix-tokens", type=int, default=2048)
    parser.add_argument("--suffix-tokens", type=int, default=32)
    parser.add_argument("--prefix-runs", type=int, default=3)
    parser.add_argument("--prefix-max-tokens", type=int, default=4)
    parser.add_argument("--label", default="", help="name of this server in the JSON")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    if args.endpoint == "chat" and args.prompt_format == "ids":
        parser.error("--prompt-format ids needs --endpoint completions")
    return args


def prefix_line(p: dict[str, Any]) -> str:
    return (
        f"prefix test ({p['prefix_tokens']}-token prefix): TTFT A "
        f"{fmt_ms(p['ttft_a_median_s'])} ms, B {fmt_ms(p['ttft_b_median_s'])} ms, "
        f"B/A {fmt(p['ratio_b_over_a_median'], 3)} ({'pass' if p['pass'] else 'FAIL'} "
        f"vs <= 0.2)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(amain(args))
    except ImportError:
        result = asyncio.run(amain(args))
    print(prefix_line(result["prefix_test"]) if args.prefix_test else result["table"])
    if args.out:
        write_json(args.out, result)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 18's acceptance: throughput at 64 clients with metrics + audit on vs off (<= 2% loss).

    python benchmarks/observability_overhead.py --model MODEL_DIR [--out DIR] [--clients 64] \\
        [--max-tokens 128] [--prompt-tokens 128] [--requests 0] [--rounds 4] \\
        [--kv-cache-gb 2] [--off-flags "--no-metrics --no-audit"] [--server-args "..."] \\
        [--gap-s 1] [--budget-s 420] [--src DIR] [--keep-data]

One run, one machine, two MLX Manager servers on the same --model with the same engine
settings (`--kv-cache-gb`, --server-args), each with its own `--data-dir` under --out (the
audit log's SQLite database lives there):

- A: the defaults: per-request Prometheus metrics and the request audit log on;
- B: the same plus --off-flags (`--no-metrics --no-audit`). Each flag is first looked up in
  `python -m mlx_manager.cli serve --help` of the code under test; one the server does not know
  (`--no-audit` before the audit log is merged) is dropped with a warning and recorded, so the
  script runs on either side of that merge (with every flag dropped it is an A/A run: the noise).

Both start at once and stay resident; only one is loaded with requests at a time. Each gets one
unrecorded warm-up burst of the measured size first (on a GPU the first batch of a new shape
compiles kernels and runs ~10x slower). Then --rounds rounds of one burst per server, in the
order A B, B A, A B, ... (A B B A A B B A: drift hits both alike). A burst is closed-loop
(`benchmarks/lib/load.py`): --clients workers drain --requests (default 4 x --clients)
streamed chat completions, each sending its next request as soon as its previous one ends.
Prompts are --prompt-tokens single-token words (`benchmarks/lib/prompts.py`), different for
every request of a burst (no prefix hits between them; A and B get the same ones in a round);
every stop id is banned with `logit_bias` -100, temperature 0, so every request generates
exactly --max-tokens tokens (a shorter one is a failure). After each burst the script waits
until the server's `/v1/queue/stats` shows nothing running or waiting, then --gap-s more (the
audit writer's flush of that burst lands before the next burst starts).

Per burst: generated tok/s (all tokens / first send -> last end), requests/s, failures, TTFT
p50 / p95, ITL p50, TPOT p50, the server's CPU time per request (/proc schedstat) and the load
generator's CPU share (near 1.0, the client would be the limit). Per server: median, min, max
and spread ((max - min) / median) of tok/s over the rounds. The result: loss = 1 -
median(A) / median(B) and the paired loss = 1 - median over rounds of A's tok/s / B's tok/s
in the same round, against the 2% target (met when <= 2%). The run's resolution is 2 standard
errors of the mean paired ratio: the verdict means something only where that is below 2%
(more rounds, or a quieter machine, bring it down).

Checks: A's `GET /metrics` answers 200 and B's 404 (when `--no-metrics` was passed); the audit
log: rows of `audit_requests` in each server's `mlx-manager.db` (sqlite3), waited for until
they stop growing, against the chat requests sent to that server (warm-up included); A should
hold one per request, B none. Counted again after both servers stopped (rows flushed at
shutdown).

Writes `observability_overhead.json` and `.txt` (the table) under --out, with both servers'
logs; their data dirs (`data_a/`, `data_b/`: the database and the store's secret key) are
removed once counted, unless --keep-data. The machine (`benchmarks/lib/machine.py`) and the
commit measured are in the JSON. The whole run stops within --budget-s: rounds that would not
fit are not started (always whole rounds, so every A has its B).

On the GPU machine: `PYTHONPATH=/tmp/site:$PWD python3 benchmarks/observability_overhead.py
--model /tmp/m_0.5b ...` (the README's section gives the full command).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.environment import REPO, maybe_reexec_with_openblas, server_env
from benchmarks.lib.load import Burst, run_burst, summarize, wait_queue_empty
from benchmarks.lib.machine import (
    gpu_memory_of,
    machine_info,
    process_cpu_s,
    process_memory_mib,
    source_info,
)
from benchmarks.lib.models import model_info
from benchmarks.lib.output import fmt, fmt_ms, logger, timestamp, write_report
from benchmarks.lib.processes import stop_on_sigterm
from benchmarks.lib.prompts import PromptBuilder
from benchmarks.lib.server import ServerProcess
from benchmarks.lib.sse import Target
from benchmarks.lib.stats import Budget, percentile

log = logger("observability_overhead", clock=True)

TARGET_LOSS = 0.02  # issue 18: <= 2% throughput loss with metrics + audit on
NAMES = ("a", "b")
LABELS = {"a": "A (observability on)", "b": "B (off flags)"}
DATABASE_FILE = "mlx-manager.db"  # mlx_manager/store/urls.py
AUDIT_TABLE = "audit_requests"
END_RESERVE_S = 30.0  # audit count and both servers' shutdown


# ---------------------------------------------------------------- the off flags


def serve_help(src: Path) -> str:
    """`python -m mlx_manager.cli serve --help` of the code under test."""
    command = [sys.executable, "-m", "mlx_manager.cli", "serve", "--help"]
    done = subprocess.run(
        command, cwd=src, env=server_env(src), capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def known_flags(flags: list[str], help_text: str) -> tuple[list[str], list[str]]:
    """(`flags` the server knows, those it does not): a `--flag` absent from `help_text` is
    dropped with the value after it, if any (a word not starting with `-`)."""
    kept: list[str] = []
    dropped: list[str] = []
    dropping = False
    for word in flags:
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            dropping = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", help_text) is None
            (dropped if dropping else kept).append(word)
        elif dropping:
            dropped.append(word)
        else:
            kept.append(word)
    return kept, dropped


# ---------------------------------------------------------------- one burst


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


def open_client(clients: int, timeout: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout, connect=60.0))


async def one_burst(
    name: str,
    server: ServerProcess,
    client: httpx.AsyncClient,
    target: Target,
    builder: PromptBuilder,
    args: argparse.Namespace,
    tag: str,
    deadline_s: float,
) -> dict[str, Any]:
    """A closed-loop burst against one server, then its queue drained and --gap-s waited."""
    prompts = builder.prompts(args.requests, args.prompt_tokens, tag)
    burst = Burst(prompts, args.clients, args.max_tokens, deadline_s, deadline_s)
    cpu0 = process_cpu_s(server.pid)
    done = await run_burst(client, target, burst)
    cpu1 = process_cpu_s(server.pid)
    s = summarize(done.records, done.wall, args.clients, args.max_tokens)
    ok = [r for r in done.records if r.error is None]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    row: dict[str, Any] = {
        "server": name,
        "tag": tag,
        "requests": s["requests"],
        "ok": s["ok"],
        "failed": s["failed"],
        "failures": s["failures"],
        "wall_s": s["wall_s"],
        "output_tokens": s["output_tokens"],
        "expected_tokens": s["expected_tokens"],
        "tok_s": s["output_tok_s"],
        "ok_tok_s": s["ok_output_tok_s"],
        "requests_s": s["ok"] / s["wall_s"] if s["wall_s"] > 0 else None,
        "ttft_p50_s": s["ttft_p50_s"],
        "ttft_p95_s": percentile(ttfts, 95),
        "itl_p50_s": s["itl_p50_s"],
        "tpot_p50_s": s["tpot_p50_s"],
        "prompt_tokens_seen": s["prompt_tokens_seen"],
        "client_cpu_frac": done.client_cpu_s / done.wall if done.wall > 0 else None,
        "failed_detail": [r.to_json() for r in done.records if r.error is not None][:5],
    }
    if cpu0 is not None and cpu1 is not None:
        cpu = cpu1["cpu_s"] - cpu0["cpu_s"]
        row["server_cpu_s"] = cpu
        row["server_cpu_ms_per_request"] = cpu / max(s["requests"], 1) * 1000
        row["server_runqueue_wait_s"] = cpu1["runqueue_wait_s"] - cpu0["runqueue_wait_s"]
    drained, _ = await wait_queue_empty(server.base, timeout=60.0)
    row["drain_s"] = drained
    if args.gap_s > 0:
        await asyncio.sleep(args.gap_s)
    log(
        f"  {tag} {LABELS[name]}: {fmt(row['tok_s'])} tok/s, {fmt(row['requests_s'], 2)} req/s, "
        f"{row['failed']}/{row['requests']} failed {row['failures'] or ''}, TTFT p50 "
        f"{fmt_ms(row['ttft_p50_s'])} ms, wall {row['wall_s']:.1f}s"
    )
    return row


def round_order(round_no: int) -> tuple[str, str]:
    """A B, B A, A B, ...: the sequence A B B A A B B A."""
    return ("a", "b") if round_no % 2 == 0 else ("b", "a")


async def measure(
    servers: dict[str, ServerProcess],
    models: dict[str, str],
    builder: PromptBuilder,
    args: argparse.Namespace,
    budget: Budget,
) -> dict[str, Any]:
    """Warm-ups, then the rounds that fit in the budget; every burst's row."""
    clients = {name: open_client(args.clients, args.timeout) for name in NAMES}
    targets = {name: make_target(servers[name].base, models[name], builder) for name in NAMES}
    warmups: dict[str, Any] = {}
    rounds: list[dict[str, Any]] = []
    stopped = None
    try:
        for name in NAMES:
            deadline = min(args.timeout, budget.left() - END_RESERVE_S)
            if deadline < 10:
                raise SystemExit(f"no budget left for the warm-ups ({budget.left():.0f}s)")
            warmups[name] = await one_burst(
                name, servers[name], clients[name], targets[name], builder, args, "warm", deadline
            )
        for round_no in range(args.rounds):
            # the measured bursts once there are some: a GPU's warm-up compiles, it is slower
            seen = all_rows({}, rounds) or all_rows(warmups, [])
            longest = max(row["wall_s"] + (row["drain_s"] or 0) for row in seen)
            needed = 2 * (longest + args.gap_s) * 1.2
            if budget.left() - END_RESERVE_S < needed:
                stopped = f"budget: {budget.left():.0f}s left, a round needs ~{needed:.0f}s"
                log(f"round {round_no}: not started ({stopped})")
                break
            entry: dict[str, Any] = {"round": round_no, "order": list(round_order(round_no))}
            for name in round_order(round_no):
                deadline = min(args.timeout, budget.left() - END_RESERVE_S)
                entry[name] = await one_burst(
                    name,
                    servers[name],
                    clients[name],
                    targets[name],
                    builder,
                    args,
                    f"r{round_no}",
                    deadline,
                )
            a, b = entry["a"]["tok_s"], entry["b"]["tok_s"]
            entry["ratio_a_over_b"] = a / b if a and b else None
            log(f"round {round_no}: A/B {fmt(entry['ratio_a_over_b'], 4)}")
            rounds.append(entry)
    finally:
        for client in clients.values():
            await client.aclose()
    return {"warmups": warmups, "rounds": rounds, "stopped": stopped}


def all_rows(warmups: dict[str, Any], rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*warmups.values(), *(entry[name] for entry in rounds for name in NAMES)]


# ---------------------------------------------------------------- checks


def metrics_status(base: str) -> dict[str, Any]:
    try:
        response = httpx.get(base + "/metrics", timeout=10)
    except httpx.HTTPError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"status": response.status_code, "bytes": len(response.content)}


def audit_rows(data_dir: Path) -> dict[str, Any]:
    """Rows of `audit_requests` in `data_dir`'s database (None where there is no table)."""
    db = data_dir / DATABASE_FILE
    if not db.is_file():
        return {"database": False, "table": False, "rows": None}
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        tables = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (AUDIT_TABLE,)
        ).fetchall()
        if not tables:
            return {"database": True, "table": False, "rows": None}
        (rows,) = connection.execute(f"SELECT COUNT(*) FROM {AUDIT_TABLE}").fetchone()
        return {"database": True, "table": True, "rows": int(rows)}
    except sqlite3.Error as exc:
        return {"database": True, "table": None, "rows": None, "error": str(exc)}
    finally:
        connection.close()


def settled_audit_rows(data_dir: Path, expected: int, wait_s: float) -> dict[str, Any]:
    """`audit_rows`, read again until it reaches `expected` or stops growing for 3 s."""
    started = time.monotonic()
    last = audit_rows(data_dir)
    same_since = time.monotonic()
    while time.monotonic() - started < wait_s and last["table"]:
        if last["rows"] is not None and last["rows"] >= expected:
            break
        time.sleep(0.5)
        now = audit_rows(data_dir)
        if now["rows"] != last["rows"]:
            same_since = time.monotonic()
        elif time.monotonic() - same_since > 3.0:
            break
        last = now
    last["waited_s"] = time.monotonic() - started
    return last


# ---------------------------------------------------------------- analysis


def spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    median = statistics.median(values)
    return {
        "n": len(values),
        "median": median,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / median if median else None,
        "values": values,
    }


def med(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def analyse(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    per_server: dict[str, Any] = {}
    for name in NAMES:
        rows = [entry[name] for entry in rounds]
        per_server[name] = {
            "tok_s": spread([r["tok_s"] for r in rows if r["tok_s"] is not None]),
            "requests_s_median": med(rows, "requests_s"),
            "failed": sum(r["failed"] for r in rows),
            "requests": sum(r["requests"] for r in rows),
            "ttft_p50_s_median": med(rows, "ttft_p50_s"),
            "ttft_p95_s_median": med(rows, "ttft_p95_s"),
            "itl_p50_s_median": med(rows, "itl_p50_s"),
            "server_cpu_ms_per_request_median": med(rows, "server_cpu_ms_per_request"),
            "client_cpu_frac_max": max(
                (r["client_cpu_frac"] for r in rows if r["client_cpu_frac"] is not None),
                default=None,
            ),
        }
    a, b = per_server["a"]["tok_s"].get("median"), per_server["b"]["tok_s"].get("median")
    ratios = [e["ratio_a_over_b"] for e in rounds if e["ratio_a_over_b"] is not None]
    loss = 1 - a / b if a and b else None
    paired = 1 - statistics.median(ratios) if ratios else None
    mean = statistics.fmean(ratios) if ratios else None
    se = statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else None
    cpu_a = per_server["a"]["server_cpu_ms_per_request_median"]
    cpu_b = per_server["b"]["server_cpu_ms_per_request_median"]
    return {
        "per_server": per_server,
        "loss": loss,
        "paired_ratios_a_over_b": ratios,
        "paired_loss": paired,
        "paired_loss_range": [1 - max(ratios), 1 - min(ratios)] if ratios else None,
        "paired_ratio_mean": mean,
        "paired_ratio_standard_error": se,
        # the noise of this run: 2 standard errors of the mean paired ratio
        "resolution": 2 * se if se is not None else None,
        "resolved": se is not None and 2 * se <= TARGET_LOSS,
        "target_loss": TARGET_LOSS,
        "met": loss is not None and loss <= TARGET_LOSS,
        "paired_met": paired is not None and paired <= TARGET_LOSS,
        "server_cpu_ms_per_request_a_minus_b": cpu_a - cpu_b
        if cpu_a is not None and cpu_b is not None
        else None,
    }


# ---------------------------------------------------------------- report


def pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value * 100:+.{digits}f}%"


def aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


def burst_row(label: str, r: dict[str, Any]) -> tuple[str, ...]:
    return (
        label,
        fmt(r["tok_s"]),
        fmt(r["requests_s"], 2),
        f"{r['failed']}/{r['requests']}",
        fmt_ms(r["ttft_p50_s"]),
        fmt_ms(r["ttft_p95_s"]),
        fmt_ms(r["itl_p50_s"], 2),
        fmt(r.get("server_cpu_ms_per_request"), 2),
        fmt(r["client_cpu_frac"], 2),
        fmt(r["wall_s"]),
    )


def resolution_line(an: dict[str, Any]) -> str:
    if an["resolution"] is None:
        return "resolution: needs 2 rounds or more"
    mean = an["paired_ratio_mean"]
    verdict = (
        "resolves the target"
        if an["resolved"]
        else f"does NOT resolve {TARGET_LOSS:.0%}: more rounds or a quieter machine"
    )
    return (
        f"resolution: mean paired loss {pct(1 - mean)} +- {an['resolution'] * 100:.2f}% "
        f"(2 standard errors over {len(an['paired_ratios_a_over_b'])} rounds): this run "
        f"{verdict}"
    )


def table(result: dict[str, Any]) -> str:
    s, m, src = result["settings"], result["machine"], result["source"]
    dirty = " (dirty)" if src.get("mlx_manager_dirty") else ""
    model = result["model"]
    lines = [
        f"observability_overhead: {result['time']}, commit {src.get('commit', '?')[:10]}{dirty}",
        f"machine: {m['platform']}, {m['cpu_count']} cores, {m.get('gpu') or 'no GPU'}, "
        f"MLX {m['mlx']} on {m['default_device']}, load {m['load_average_1_5_15min_at_end']}",
        f"model: {model['served']} ({model['path']}; {model.get('num_hidden_layers', '?')} "
        f"layers, hidden {model.get('hidden_size', '?')}, {model.get('torch_dtype', '?')}, "
        f"{model['weights_bytes'] / 1e6:,.0f} MB of weights)",
        f"{s['clients']} clients, {s['requests']} streamed chat requests per burst, prompt "
        f"{s['prompt_tokens']} words, {s['max_tokens']} tokens each (stop ids banned), "
        f"temperature 0; --kv-cache-gb {s['kv_cache_gb']} {s['server_args']}".rstrip(),
        f"rounds: {len(result['rounds'])} of {s['rounds']} (order A B, B A, A B, ...), one "
        f"unrecorded warm-up burst each, {s['gap_s']} s after each burst's queue drained",
    ]
    for name in NAMES:
        flags = result["servers"][name]["flags"]
        lines.append(f"{LABELS[name]}: {shlex.join(flags) or '(defaults)'}")
    if result["dropped_flags"]:
        lines.append(
            f"dropped (not in this server's serve --help): {shlex.join(result['dropped_flags'])}"
        )
    head = ("burst", "tok/s", "req/s", "failed", "TTFT p50 ms", "TTFT p95 ms", "ITL p50 ms",
            "srv CPU ms/req", "client CPU", "wall s")  # fmt: skip
    rows: list[tuple[str, ...]] = [head]
    for name, r in result["warmups"].items():
        rows.append(burst_row(f"warm-up {name.upper()}", r))
    for entry in result["rounds"]:
        for name in entry["order"]:
            rows.append(burst_row(f"round {entry['round']} {name.upper()}", entry[name]))
    lines += ["", *aligned(rows)]
    if result.get("stopped"):
        lines.append(f"stopped: {result['stopped']}")
    an = result.get("analysis")
    if an:
        head2 = ("server", "bursts", "tok/s median", "min", "max", "spread", "req/s",
                 "TTFT p50 ms", "TTFT p95 ms", "ITL p50 ms", "srv CPU ms/req")  # fmt: skip
        rows = [head2]
        for name in NAMES:
            p = an["per_server"][name]
            t = p["tok_s"]
            rows.append(
                (
                    LABELS[name],
                    str(t["n"]),
                    fmt(t.get("median")),
                    fmt(t.get("min")),
                    fmt(t.get("max")),
                    pct(t.get("spread"), 1).lstrip("+"),
                    fmt(p["requests_s_median"], 2),
                    fmt_ms(p["ttft_p50_s_median"]),
                    fmt_ms(p["ttft_p95_s_median"]),
                    fmt_ms(p["itl_p50_s_median"], 2),
                    fmt(p["server_cpu_ms_per_request_median"], 2),
                )
            )
        ratios = ", ".join(f"{r:.4f}" for r in an["paired_ratios_a_over_b"])
        rng = an["paired_loss_range"]
        lines += [
            "",
            "per server (medians over the rounds; spread = (max - min) / median):",
            *aligned(rows),
            "",
            f"loss = 1 - median(A) / median(B) = {pct(an['loss'])} "
            f"(target <= {TARGET_LOSS:.0%}: {'met' if an['met'] else 'NOT met'})",
            f"paired: A/B per round {ratios}; loss = 1 - median = {pct(an['paired_loss'])} "
            f"(rounds {pct(rng[0]) if rng else '-'} .. {pct(rng[1]) if rng else '-'}; "
            f"{'met' if an['paired_met'] else 'NOT met'})",
            resolution_line(an),
            f"server CPU per request, A - B: "
            f"{fmt(an['server_cpu_ms_per_request_a_minus_b'], 3)} ms",
        ]
    lines += ["", "checks:"]
    for name in NAMES:
        c = result["checks"][name]
        audit, after = c["audit"], c.get("audit_after_stop") or {}
        if audit.get("table"):
            rows_text = (
                f"{audit['rows']} rows (expected {c['audit_expected_rows']}) for "
                f"{c['chat_requests_sent']} chat requests sent "
                f"(after stop: {after.get('rows', '-')})"
            )
        elif audit.get("database"):
            rows_text = f"no {AUDIT_TABLE} table (no audit log in this code)"
        else:
            rows_text = "no database"
        metrics = c["metrics"].get("status", c["metrics"].get("error"))
        lines.append(f"  {LABELS[name]}: GET /metrics -> {metrics}; audit: {rows_text}")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model", type=Path, required=True, help="model directory (its tokenizer too)")
    add("--out", type=Path, default=REPO / "benchmarks" / "results" / "observability_overhead")
    add("--clients", type=int, default=64, help="concurrent streams of a burst")
    add("--requests", type=int, default=0, help="requests per burst (0: 4 x --clients)")
    add("--max-tokens", type=int, default=128, help="generated tokens per request")
    add("--prompt-tokens", type=int, default=128, help="words of each prompt")
    add("--rounds", type=int, default=4, help="rounds of one burst per server")
    add("--kv-cache-gb", type=float, default=2.0, help="each server's KV pool")
    add("--off-flags", default="--no-metrics --no-audit", help="server B's extra flags")
    add("--server-args", default="", help="extra flags of both servers (engine settings)")
    add("--gap-s", type=float, default=1.0, help="pause after each burst's queue drained")
    add("--timeout", type=float, default=300.0, help="one burst (and each request in it)")
    add("--budget-s", type=float, default=420.0, help="the whole run")
    add("--start-timeout", type=float, default=240.0)
    add("--src", type=Path, default=REPO, help="import mlx_manager from DIR (both servers)")
    add("--keep-data", action="store_true", help="keep the servers' data dirs (database, key)")
    args = parser.parse_args(argv)
    args.requests = args.requests or 4 * args.clients
    return args


def start(
    stack: contextlib.ExitStack, args: argparse.Namespace, flags: dict[str, list[str]]
) -> tuple[dict[str, ServerProcess], dict[str, str]]:
    servers = {
        name: stack.enter_context(
            ServerProcess.manager(
                args.model, args.out / f"server_{name}.log", flags[name], args.src
            )
        )
        for name in NAMES
    }
    models = {}
    for name in NAMES:
        listed = servers[name].wait_health(args.start_timeout)
        models[name] = listed[0] if listed else args.model.name
        log(f"{LABELS[name]} ready in {servers[name].ready_s:.1f}s, model {models[name]!r}")
    return servers, models


def main(argv: list[str] | None = None) -> int:
    maybe_reexec_with_openblas()  # the servers re-exec the same way: one environment
    args = parse_args(argv)
    stop_on_sigterm()
    budget = Budget(args.budget_s)
    args.out = args.out.resolve()
    args.model = args.model.resolve()
    args.src = args.src.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"benchmark": "observability_overhead", "time": timestamp()}
    result["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}

    off, dropped = known_flags(shlex.split(args.off_flags), serve_help(args.src))
    for word in dropped:
        if word.startswith("--"):
            log(f"warning: {word} is not in this server's `serve --help`: dropped from B")
    if not off:
        log("warning: B gets no off flag this server knows: this is an A/A run (the noise)")
    result["dropped_flags"] = dropped
    data = {name: args.out / f"data_{name}" for name in NAMES}
    common = ["--kv-cache-gb", str(args.kv_cache_gb), *shlex.split(args.server_args)]
    flags = {
        "a": [*common, "--data-dir", str(data["a"])],
        "b": [*common, "--data-dir", str(data["b"]), *off],
    }
    builder = PromptBuilder(args.model)
    result["model"] = model_info(args.model)
    with contextlib.ExitStack() as stack:
        servers, models = start(stack, args, flags)
        result["model"]["served"] = models["a"]
        done = asyncio.run(measure(servers, models, builder, args, budget))
        result.update(done)
        result["analysis"] = analyse(done["rounds"]) if done["rounds"] else None
        checks: dict[str, Any] = {}
        for name in NAMES:
            sent = sum(
                r["requests"]
                for r in all_rows(done["warmups"], done["rounds"])
                if r["server"] == name
            )
            checks[name] = {
                "chat_requests_sent": sent,
                "metrics": metrics_status(servers[name].base),
            }
        for name in NAMES:
            # a row per request, unless this server got --no-audit
            unaudited = "--no-audit" in flags[name]
            expected = 0 if unaudited else checks[name]["chat_requests_sent"]
            checks[name]["audit_expected_rows"] = expected
            checks[name]["audit"] = settled_audit_rows(data[name], expected, 15.0)
        result["checks"] = checks
        result["servers"] = {
            name: {
                "flags": flags[name],
                "command": servers[name].command,
                "ready_s": servers[name].ready_s,
                "memory_mib": process_memory_mib(servers[name].pid),
                "gpu_memory_mib": gpu_memory_of(servers[name].pid),
            }
            for name in NAMES
        }
    for name in NAMES:
        result["checks"][name]["audit_after_stop"] = audit_rows(data[name])
        if not args.keep_data:
            shutil.rmtree(data[name], ignore_errors=True)
    result["machine"] = machine_info()
    result["source"] = source_info(args.src)
    result["elapsed_s"] = budget.elapsed()
    write_report(args.out, "observability_overhead", result, table(result))
    log(f"wrote {args.out} in {budget.elapsed():.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

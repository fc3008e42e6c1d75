"""Closed-loop load: C workers drain a queue of streamed requests; per-level statistics."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks.lib.prompts import Prompt
from benchmarks.lib.sse import RequestRecord, Target, stream_request, timed_request
from benchmarks.lib.stats import percentile


@dataclass(slots=True)
class Burst:
    """One closed-loop burst: what to send, how many at once, and its time limits.

    With `ramp_s` > 0 the workers start evenly spread over that many seconds instead of at
    once; `deadline_s` cuts the whole burst off (requests never sent or cut off are failures).
    """

    prompts: list[Prompt]
    concurrency: int
    max_tokens: int
    timeout: float  # per request
    deadline_s: float
    ramp_s: float = 0.0


@dataclass(slots=True)
class BurstResult:
    records: list[RequestRecord]
    wall: float  # first send -> last end (the deadline when cut off)
    client_cpu_s: float  # this process's CPU seconds: near one per wall second, it is the limit


async def run_burst(client: httpx.AsyncClient, target: Target, burst: Burst) -> BurstResult:
    """Closed loop: `burst.concurrency` workers drain `burst.prompts`, each sending its next
    request as soon as its previous one ends."""
    records = [RequestRecord(i) for i in range(len(burst.prompts))]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(burst.prompts)):
        queue.put_nowait(i)

    async def worker(position: int) -> None:
        if burst.ramp_s > 0:
            await asyncio.sleep(burst.ramp_s * position / max(burst.concurrency, 1))
        while not queue.empty():
            i = queue.get_nowait()
            prompt, record = burst.prompts[i], records[i]
            await timed_request(client, target, prompt, burst.max_tokens, record, burst.timeout)

    t0, cpu0 = time.perf_counter(), time.process_time()
    workers = min(burst.concurrency, len(burst.prompts))
    tasks = [asyncio.create_task(worker(w)) for w in range(workers)]
    _, pending = await asyncio.wait(tasks, timeout=burst.deadline_s)
    cut = time.perf_counter()
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    close_cut_off(records, cut, burst.deadline_s)
    ends = [r.end for r in records if r.end is not None]
    wall = (max(ends) if ends else cut) - t0
    return BurstResult(records, wall, time.process_time() - cpu0)


def close_cut_off(records: list[RequestRecord], cut: float, deadline_s: float) -> None:
    """Book the requests the deadline stopped: never sent, or still streaming at `cut`."""
    for r in records:
        if r.start == 0.0:
            r.fail("not_sent", f"level deadline {deadline_s:.0f}s")
        elif r.end is None or (r.error is None and not r.done):
            r.end = r.end or cut
            r.fail("level_timeout", f"cut at level deadline {deadline_s:.0f}s")


def summarize(
    records: list[RequestRecord], wall: float, concurrency: int, max_tokens: int
) -> dict[str, Any]:
    """A level's throughput, failures and TTFT / ITL / TPOT percentiles (ok requests only)."""
    ok = [r for r in records if r.error is None]
    tokens = sum(r.tokens for r in records)
    ok_tokens = sum(r.tokens for r in ok)
    return {
        "concurrency": concurrency,
        "requests": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "failures": dict(Counter(r.error for r in records if r.error is not None)),
        "wall_s": wall,
        "output_tokens": tokens,
        "ok_output_tokens": ok_tokens,
        "output_tok_s": tokens / wall if wall > 0 else None,
        "ok_output_tok_s": ok_tokens / wall if wall > 0 else None,
        "expected_tokens": len(records) * max_tokens,
        **latencies(ok),
        "prompt_tokens_seen": sorted(
            {r.prompt_tokens for r in records if r.prompt_tokens is not None}
        ),
        "chunks_per_token_mean": chunks_per_token(ok),
        "cached_tokens_max": max(
            (r.cached_tokens for r in records if r.cached_tokens is not None), default=None
        ),
    }


def latencies(ok: list[RequestRecord]) -> dict[str, float | None]:
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    itls = [x for r in ok for x in r.itls]
    tpots = [r.tpot for r in ok if r.tpot is not None]
    return {
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p99_s": percentile(ttfts, 99),
        "ttft_max_s": max(ttfts) if ttfts else None,
        "itl_p50_s": percentile(itls, 50),
        "itl_p99_s": percentile(itls, 99),
        "tpot_p50_s": percentile(tpots, 50),
        "tpot_p99_s": percentile(tpots, 99),
    }


def chunks_per_token(ok: list[RequestRecord]) -> float | None:
    values = [r.chunks / r.tokens for r in ok if r.tokens]
    return statistics.fmean(values) if values else None


def require_finish(records: list[RequestRecord]) -> None:
    """Book a stream that ended with [DONE] but never sent a finish_reason as a failure."""
    for r in records:
        if r.error is None and r.finish_reason is None:
            r.fail("no_finish_reason", "[DONE] without a finish_reason")


# ---------------------------------------------------------------- probes and recovery


def probe_client(timeout: float) -> httpx.AsyncClient:
    """A client that opens a fresh connection per request (no keep-alive): a probe pays the
    connect, as a new client of a busy server does."""
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=0)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout, connect=timeout))


async def sequential_ttfts(
    target: Target, prompts: list[Prompt], max_tokens: int, timeout: float, gap_s: float = 0.0
) -> list[RequestRecord]:
    """One streamed request after the other (each on a new connection), `gap_s` apart."""
    records = [RequestRecord(i) for i in range(len(prompts))]
    async with probe_client(timeout) as client:
        for prompt, record in zip(prompts, records, strict=True):
            await timed_request(client, target, prompt, max_tokens, record, timeout)
            if gap_s:
                await asyncio.sleep(gap_s)
    return records


async def queue_stats(client: httpx.AsyncClient, base: str) -> dict[str, Any]:
    """MLX Manager's /v1/queue/stats (the engine snapshot: running, waiting, ...)."""
    response = await client.get(base + "/v1/queue/stats", timeout=10)
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


async def wait_queue_empty(
    base: str, timeout: float, since: float | None = None, poll_s: float = 0.02
) -> tuple[float | None, dict[str, Any]]:
    """Seconds from `since` (a perf_counter time; default now) until /v1/queue/stats shows
    running == waiting == 0 (None: not within `timeout`), and the last stats read."""
    started = time.perf_counter()
    since = started if since is None else since
    stats: dict[str, Any] = {}
    async with httpx.AsyncClient() as client:
        while time.perf_counter() - started < timeout:
            stats = await queue_stats(client, base)
            if stats["running"] == 0 and stats["waiting"] == 0:
                return time.perf_counter() - since, stats
            await asyncio.sleep(poll_s)
    return None, stats


@dataclass(slots=True)
class Cancelled:
    records: list[RequestRecord]
    first_tokens_s: float  # first send -> every stream had its first token (or failed)
    cancelled_at: float  # perf_counter when the connections were closed


async def cancel_after_first_token(
    target: Target, prompts: list[Prompt], max_tokens: int, timeout: float
) -> Cancelled:
    """Open one stream per prompt at once; once every stream has its first token (or failed,
    or `timeout` passed), close every connection as a client that gives up does."""
    records = [RequestRecord(i) for i in range(len(prompts))]
    n = len(prompts)
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(timeout, connect=timeout))
    tasks = [
        asyncio.create_task(stream_request(client, target, p, max_tokens, r))
        for p, r in zip(prompts, records, strict=True)
    ]
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if all(r.first is not None or r.error is not None or r.end for r in records):
            break
        await asyncio.sleep(0.01)
    first_tokens_s = time.perf_counter() - started
    cancelled_at = time.perf_counter()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.aclose()
    return Cancelled(records, first_tokens_s, cancelled_at)

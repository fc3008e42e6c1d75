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
import contextlib
import json
import math
import platform
import random
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

BAN_BIAS = -100.0  # the most negative logit_bias the OpenAI API accepts
END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "</s>")
WORD = re.compile(r" [a-z]{2,12}")


# ---------------------------------------------------------------- prompts


class PromptBuilder:
    """Prompts of exactly N tokens: random sequences of single-token words.

    The pool holds the ids whose text is one lowercase word after a space (" house") and that
    encode back to exactly themselves, so concatenating N of them encodes to those N ids (the
    pre-tokenizer splits at each space). `specials` is how many tokens the tokenizer adds
    around a text when the server encodes it with special tokens (a BOS, typically).
    """

    def __init__(self, tokenizer_dir: Path) -> None:
        self.tokenizer_dir = tokenizer_dir
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.pool = self._word_pool()
        if len(self.pool) < 100:
            raise SystemExit(f"only {len(self.pool)} single-token words in {tokenizer_dir}")
        self.specials = len(self.encode("hello", special=True)) - len(self.encode("hello"))

    def encode(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=special))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids))

    def _word_pool(self) -> list[int]:
        vocab: dict[str, int] = self.tokenizer.get_vocab()
        pool = []
        for token_id in sorted(vocab.values()):
            text = self.decode([token_id])
            if WORD.fullmatch(text) and self.encode(text) == [token_id]:
                pool.append(token_id)
        return pool

    def ids(self, n: int, seed: int | str) -> list[int]:
        rng = random.Random(f"load_sweep:{seed}")
        return [rng.choice(self.pool) for _ in range(n)]

    def text_of(self, ids: list[int]) -> str:
        """The text of `ids`; checked to encode back to the same ids."""
        text = self.decode(ids)
        back = self.encode(text)
        if back != ids:
            raise RuntimeError(f"prompt of {len(ids)} ids re-encodes to {len(back)} ids")
        return text

    def eos_ids(self) -> list[int]:
        """Stop ids a server may use: EOS ids of config.json / generation_config.json /
        tokenizer_config.json, plus common end-of-turn tokens of this vocabulary."""
        ids: set[int] = set()
        for name in ("config.json", "generation_config.json"):
            path = self.tokenizer_dir / name
            if path.is_file():
                value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
                if isinstance(value, int):
                    ids.add(value)
                elif isinstance(value, list):
                    ids.update(int(v) for v in value)
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
        return sorted(ids)


def load_tokenizer(path: Path) -> Any:
    """transformers' AutoTokenizer (what mlx-lm and MLX Manager use) from a local dir."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


@dataclass(slots=True)
class Prompt:
    ids: list[int]
    text: str


# ---------------------------------------------------------------- one request


@dataclass(slots=True)
class RequestRecord:
    """One request, filled in as its stream arrives (partial when it is cut off)."""

    index: int
    start: float = 0.0  # perf_counter when sent
    end: float | None = None
    status: int | None = None
    first: float | None = None  # first non-empty content chunk
    last: float | None = None  # last non-empty content chunk
    itls: list[float] = field(default_factory=list)
    chunks: int = 0  # non-empty content chunks
    usage_completion: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    done: bool = False  # saw [DONE]
    error: str | None = None  # kind: http, connection, timeout, level_timeout, ...
    detail: str = ""

    @property
    def tokens(self) -> int:
        return self.usage_completion if self.usage_completion is not None else self.chunks

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.start

    @property
    def tpot(self) -> float | None:
        if self.first is None or self.last is None or self.tokens < 2:
            return None
        return (self.last - self.first) / (self.tokens - 1)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["itls"]
        out["tokens"] = self.tokens
        out["ttft_s"] = self.ttft
        out["tpot_s"] = self.tpot
        out["latency_s"] = None if self.end is None else self.end - self.start
        out["itl_s"] = [round(x, 6) for x in self.itls]
        return out


@dataclass(frozen=True, slots=True)
class Target:
    base: str  # http://host:port
    model: str
    endpoint: str  # completions | chat
    prompt_format: str  # text | ids
    temperature: float
    eos_ids: tuple[int, ...]
    usage: bool

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions"

    def payload(self, prompt: Prompt, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "stream": True,
        }
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt.text}]
        else:
            body["prompt"] = prompt.ids if self.prompt_format == "ids" else prompt.text
        if self.usage:
            body["stream_options"] = {"include_usage": True}
        if self.eos_ids:
            body["logit_bias"] = {str(i): BAN_BIAS for i in self.eos_ids}
        return body


def content_of(chunk: dict[str, Any], endpoint: str) -> tuple[str, str | None]:
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    if endpoint == "chat":
        text = (choice.get("delta") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    return text, choice.get("finish_reason")


async def stream_request(
    client: httpx.AsyncClient,
    target: Target,
    prompt: Prompt,
    max_tokens: int,
    record: RequestRecord,
) -> None:
    """Send one streaming request; fill `record` as chunks arrive. Raises nothing but
    CancelledError (the caller's timeouts)."""
    record.start = time.perf_counter()
    try:
        async with client.stream(
            "POST", target.base + target.path, json=target.payload(prompt, max_tokens)
        ) as response:
            record.status = response.status_code
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                record.error, record.detail = "http", f"{response.status_code}: {body[:300]}"
                return
            async for line in response.aiter_lines():
                now = time.perf_counter()
                if not line.startswith("data:"):
                    continue  # blank separators, ": keepalive" comments, event: lines
                data = line[5:].strip()
                if data == "[DONE]":
                    record.done = True
                    break
                try:
                    chunk = json.loads(data)
                except json.JSONDecodeError:
                    record.error, record.detail = "bad_chunk", data[:300]
                    return
                if "error" in chunk:
                    record.error, record.detail = "stream_error", json.dumps(chunk)[:300]
                    return
                text, finish = content_of(chunk, target.endpoint)
                if text:
                    if record.last is not None:
                        record.itls.append(now - record.last)
                    if record.first is None:
                        record.first = now
                    record.last = now
                    record.chunks += 1
                if finish:
                    record.finish_reason = finish
                usage = chunk.get("usage")
                if usage:
                    record.usage_completion = usage.get("completion_tokens")
                    record.prompt_tokens = usage.get("prompt_tokens")
                    details = usage.get("prompt_tokens_details") or {}
                    record.cached_tokens = details.get("cached_tokens")
    except httpx.TimeoutException as e:
        record.error, record.detail = "timeout", f"{type(e).__name__}: {e}"
    except (httpx.TransportError, httpx.StreamError) as e:
        record.error, record.detail = "connection", f"{type(e).__name__}: {e}"
    finally:
        record.end = time.perf_counter()
    if record.error is None:
        if not record.done:
            record.error = "no_done"
        elif record.tokens < max_tokens:
            record.error = "short"
            record.detail = f"{record.tokens} < {max_tokens} tokens ({record.finish_reason})"


async def timed_request(
    client: httpx.AsyncClient,
    target: Target,
    prompt: Prompt,
    max_tokens: int,
    record: RequestRecord,
    timeout: float,
) -> None:
    try:
        await asyncio.wait_for(stream_request(client, target, prompt, max_tokens, record), timeout)
    except TimeoutError:
        record.error, record.detail = "timeout", f"request ran past {timeout:.0f}s"
        record.end = time.perf_counter()


# ---------------------------------------------------------------- one level


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(
    records: list[RequestRecord], wall: float, concurrency: int, max_tokens: int
) -> dict[str, Any]:
    ok = [r for r in records if r.error is None]
    tokens = sum(r.tokens for r in records)
    ok_tokens = sum(r.tokens for r in ok)
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    itls = [x for r in ok for x in r.itls]
    tpots = [r.tpot for r in ok if r.tpot is not None]
    prompt_tokens = sorted({r.prompt_tokens for r in records if r.prompt_tokens is not None})
    chunks_per_token = [r.chunks / r.tokens for r in ok if r.tokens]
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
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p99_s": percentile(ttfts, 99),
        "ttft_max_s": max(ttfts) if ttfts else None,
        "itl_p50_s": percentile(itls, 50),
        "itl_p99_s": percentile(itls, 99),
        "tpot_p50_s": percentile(tpots, 50),
        "tpot_p99_s": percentile(tpots, 99),
        "prompt_tokens_seen": prompt_tokens,
        "chunks_per_token_mean": statistics.fmean(chunks_per_token) if chunks_per_token else None,
        "cached_tokens_max": max(
            (r.cached_tokens for r in records if r.cached_tokens is not None), default=None
        ),
    }


async def run_burst(
    client: httpx.AsyncClient,
    target: Target,
    prompts: list[Prompt],
    concurrency: int,
    max_tokens: int,
    timeout: float,
    deadline_s: float,
    ramp_s: float = 0.0,
    client_cpu: list[float] | None = None,
) -> tuple[list[RequestRecord], float]:
    """Closed loop: `concurrency` workers drain `prompts`; cut off after `deadline_s`.

    With `ramp_s` > 0 the workers start evenly spread over that many seconds instead of at once.
    `client_cpu[0]` receives this process's CPU seconds over the burst (a load generator near
    one core per wall second is itself the bottleneck).

    Returns the records (requests never sent or cut off are failures) and the wall time from
    the first send to the last end (the deadline when cut off).
    """
    client_cpu = client_cpu if client_cpu is not None else [0.0]
    records = [RequestRecord(i) for i in range(len(prompts))]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(prompts)):
        queue.put_nowait(i)

    async def worker(position: int) -> None:
        if ramp_s > 0:
            await asyncio.sleep(ramp_s * position / max(concurrency, 1))
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await timed_request(client, target, prompts[i], max_tokens, records[i], timeout)

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    tasks = [asyncio.create_task(worker(w)) for w in range(min(concurrency, len(prompts)))]
    _, pending = await asyncio.wait(tasks, timeout=deadline_s)
    cut = time.perf_counter()
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for r in records:
        if r.start == 0.0:
            r.error, r.detail = "not_sent", f"level deadline {deadline_s:.0f}s"
        elif r.end is None or (r.error is None and not r.done):
            r.end = r.end or cut
            r.error, r.detail = "level_timeout", f"cut at level deadline {deadline_s:.0f}s"
    ends = [r.end for r in records if r.end is not None]
    wall = (max(ends) if ends else cut) - t0
    client_cpu[0] = time.process_time() - cpu0
    return records, wall


def level_prompts(builder: PromptBuilder, n: int, tokens: int, tag: str) -> list[Prompt]:
    words = max(1, tokens - builder.specials)
    out = []
    for i in range(n):
        ids = builder.ids(words, f"{tag}:{i}")
        out.append(Prompt(ids, builder.text_of(ids)))
    return out


async def run_level(
    client: httpx.AsyncClient,
    target: Target,
    builder: PromptBuilder,
    args: argparse.Namespace,
    concurrency: int,
    deadline_s: float,
) -> dict[str, Any]:
    n = args.requests_per_level or max(concurrency, 4)
    level_start = time.perf_counter()
    warm: dict[str, Any] | None = None
    if args.warmup != "none":
        count = concurrency if args.warmup == "burst" else 1
        prompts = level_prompts(builder, count, args.prompt_tokens, f"warm:{concurrency}")
        records, wall = await run_burst(
            client,
            target,
            prompts,
            count,
            args.warmup_tokens,
            args.timeout,
            deadline_s / 2,
            args.ramp_s,
        )
        warm = summarize(records, wall, count, args.warmup_tokens)
        log(
            f"  warm-up c={concurrency}: {warm['ok']}/{warm['requests']} ok in {wall:.1f}s "
            f"{warm['failures'] or ''}"
        )
    remaining = deadline_s - (time.perf_counter() - level_start)
    client_cpu = [0.0]
    prompts = level_prompts(builder, n, args.prompt_tokens, f"level:{concurrency}")
    records, wall = await run_burst(
        client,
        target,
        prompts,
        concurrency,
        args.max_tokens,
        args.timeout,
        max(remaining, 1.0),
        args.ramp_s,
        client_cpu,
    )
    summary = summarize(records, wall, concurrency, args.max_tokens)
    chunks = sum(r.chunks for r in records)
    summary["client_cpu_s"] = client_cpu[0]
    summary["client_cpu_frac"] = client_cpu[0] / wall if wall > 0 else None
    summary["client_cpu_us_per_chunk"] = client_cpu[0] / chunks * 1e6 if chunks else None
    if summary["client_cpu_frac"] and summary["client_cpu_frac"] > 0.8:
        log(
            f"  warning: the load generator used {summary['client_cpu_frac']:.0%} of a core: "
            "it may be the bottleneck at this level"
        )
    summary["warmup"] = warm
    summary["deadline_s"] = deadline_s
    if args.keep_requests:
        summary["requests_detail"] = [r.to_json() for r in records]
    else:
        summary["failed_detail"] = [r.to_json() for r in records if r.error is not None][:20]
    return summary


# ---------------------------------------------------------------- prefix test


async def run_prefix_test(
    client: httpx.AsyncClient, target: Target, builder: PromptBuilder, args: argparse.Namespace
) -> dict[str, Any]:
    words = max(1, args.prefix_tokens - builder.specials)
    runs = []
    # Seeded by endpoint and format too: a second test against the same server must not find
    # its prefixes already cached by the first one.
    tag = f"{args.endpoint}:{args.prompt_format}"
    for run in range(args.prefix_runs):
        prefix = builder.ids(words, f"prefix:{tag}:{run}")
        suffix_a = builder.ids(args.suffix_tokens, f"suffix-a:{tag}:{run}")
        suffix_b = builder.ids(args.suffix_tokens, f"suffix-b:{tag}:{run}")
        unrelated = builder.ids(words + args.suffix_tokens, f"prefix-warm:{tag}:{run}")
        result: dict[str, Any] = {"run": run}
        for name, ids in (
            ("warmup", unrelated),
            ("a", prefix + suffix_a),
            ("b", prefix + suffix_b),
        ):
            record = RequestRecord(0)
            prompt = Prompt(ids, builder.text_of(ids))
            await timed_request(
                client, target, prompt, args.prefix_max_tokens, record, args.timeout
            )
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
        runs.append(result)
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


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.1f}"


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


def log(message: str) -> None:
    print(f"[load_sweep] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- main


async def resolve_model(client: httpx.AsyncClient, base: str, model: str) -> str:
    if model != "auto":
        return model
    response = await client.get(base + "/v1/models", timeout=30)
    response.raise_for_status()
    data = response.json().get("data") or []
    if not data:
        raise SystemExit(f"{base}/v1/models lists no model; pass --model")
    return str(data[0]["id"])


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    builder = PromptBuilder(args.tokenizer)
    if args.prompt_format == "ids":
        builder.specials = 0  # ids go to the model as they are: no BOS added by the server
    if args.eos_ids == "auto":
        eos_ids = builder.eos_ids()
    elif args.eos_ids == "none":
        eos_ids = []
    else:
        eos_ids = [int(x) for x in args.eos_ids.split(",") if x.strip()]
    base = args.url.rstrip("/").removesuffix("/v1")
    most = max([*args.concurrency, 1])
    limits = httpx.Limits(max_connections=most + 8, max_keepalive_connections=most + 8)
    timeout = httpx.Timeout(args.timeout, connect=60.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        model = await resolve_model(client, base, args.model)
        target = Target(
            base=base,
            model=model,
            endpoint=args.endpoint,
            prompt_format=args.prompt_format,
            temperature=args.temperature,
            eos_ids=tuple(eos_ids),
            usage=not args.no_usage,
        )
        shape = (
            f"prefix test: {args.prefix_tokens}-token prefix + {args.suffix_tokens}-token "
            f"suffixes, max_tokens {args.prefix_max_tokens}"
            if args.prefix_test
            else f"prompt {args.prompt_tokens} tokens, max_tokens {args.max_tokens}"
        )
        log(
            f"{base}{target.path} model={model!r} {shape} ({args.prompt_format}, "
            f"{len(builder.pool)} words, {builder.specials} special), banned ids {eos_ids}"
        )
        result: dict[str, Any] = {
            "benchmark": "load_sweep",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "label": args.label,
            "machine": {"platform": platform.platform(), "python": platform.python_version()},
            "settings": {
                "url": base + target.path,
                "model": model,
                "endpoint": args.endpoint,
                "prompt_format": args.prompt_format,
                "prompt_tokens": args.prompt_tokens,
                "max_tokens": args.max_tokens,
                "temperature": args.temperature,
                "banned_ids": eos_ids,
                "requests_per_level": args.requests_per_level or "max(concurrency, 4)",
                "warmup": args.warmup,
                "warmup_tokens": args.warmup_tokens,
                "timeout_s": args.timeout,
                "ramp_s": args.ramp_s,
                "level_timeout_s": args.level_timeout,
                "budget_s": args.budget_s,
                "tokenizer": str(args.tokenizer),
                "usage_requested": not args.no_usage,
            },
            "levels": [],
        }
        if args.prefix_test:
            result["prefix_test"] = await run_prefix_test(client, target, builder, args)
            return result
        for concurrency in args.concurrency:
            left = (
                None if args.budget_s is None else args.budget_s - (time.perf_counter() - started)
            )
            if left is not None and left < args.min_level_s:
                result["levels"].append(
                    {"concurrency": concurrency, "skipped": f"budget ({left:.0f}s left)"}
                )
                log(f"c={concurrency}: skipped, {left:.0f}s of the budget left")
                continue
            deadline = args.level_timeout if left is None else min(args.level_timeout, left)
            log(f"c={concurrency}: deadline {deadline:.0f}s")
            level = await run_level(client, target, builder, args, concurrency, deadline)
            result["levels"].append(level)
            log(
                f"c={concurrency}: {fmt(level['output_tok_s'])} tok/s, "
                f"{level['failed']}/{level['requests']} failed {level['failures'] or ''}, "
                f"TTFT p50 {fmt_ms(level['ttft_p50_s'])} ms, wall {level['wall_s']:.1f}s"
            )
    result["table"] = table(result["levels"])
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(amain(args))
    except ImportError:
        result = asyncio.run(amain(args))
    if args.prefix_test:
        p = result["prefix_test"]
        print(
            f"prefix test ({p['prefix_tokens']}-token prefix): TTFT A "
            f"{fmt_ms(p['ttft_a_median_s'])} ms, B {fmt_ms(p['ttft_b_median_s'])} ms, "
            f"B/A {fmt(p['ratio_b_over_a_median'], 3)} ({'pass' if p['pass'] else 'FAIL'} "
            f"vs <= 0.2)"
        )
    else:
        print(result["table"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

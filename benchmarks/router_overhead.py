"""The router's overhead on a pass-through (issue 16): via the router vs the upstream directly.

    python benchmarks/router_overhead.py --model MODEL_DIR [--out DIR] [--budget-s 420] \\
        [--requests 300] [--warmup 20] [--max-tokens 1] [--litellm-bin PATH] [--profile-s 0] \\
        [--src DIR] [--router-src DIR] [--compare-src DIR] [--filler-rules 10]
    python benchmarks/router_overhead.py --tokenizer TOKENIZER_DIR ...   # builds a `tiny` model

Loopback only, one machine, one run. Three to five servers:

- upstream: MLX Manager serving --model (with --tokenizer instead, a `tiny` random float32
  llama that `make_random_model.py` builds into a temporary directory);
- router: MLX Manager with no local model (`--model-dir` an empty directory) and a config
  (`router_config.json`) with two providers on that upstream, `openai_compatible` (its /v1)
  and `anthropic` (its root), --filler-rules exact, prefix and regex rules that never match
  (a rule table of some size), then the three measured rules: exact `bench-exact` and regex
  `bench-re-[0-9]+` to the OpenAI-compatible provider, exact `bench-anthropic` to the Anthropic
  one (an OpenAI request translated to Anthropic Messages and the answer back);
- with --compare-src DIR: router B, the same config, importing mlx_manager from DIR (a
  `git archive` of another commit): an A/B of router code within one run;
- with --litellm-bin: LiteLLM's proxy (its own virtual environment, never the project's; a
  clean environment, its bundled cost map) with one model `bench-litellm` =
  `openai/<upstream model>` at the upstream's /v1, retries off (`litellm_config.yaml`).

Targets, each on its own kept-alive connection (one httpx.Client each), one request at a time:
`direct` (the upstream itself), `router_exact`, `router_regex`, `router_anthropic` (and
`router_b_*`), `litellm`. Every request is the same chat completion: one user message (the
first of a few candidates whose greedy first token is visible text), `max_tokens` --max-tokens
(1), temperature 0, so the model's share is small and steady. Two phases, each --warmup rounds
unrecorded then --requests rounds; a round sends one request to every target, the order
rotating by one each round (A B C D, B C D A, ...; `--order fixed` keeps A B C D), so drift
hits all alike:

1. non-streaming: time from sending to the whole JSON body read;
2. streaming (`stream_options.include_usage`): time to the last byte (the stream closed after
   `[DONE]`) and time to the first chunk with content.

For each target and figure: p50, p90, p99, mean, min, max (ms). The overhead of a proxied
target is reported two ways: the p50 (and p90, p99) of the paired differences (its sample minus
the direct sample of the same round) and the difference of the p50s (and of the p99s); then the
paired p50 over the 2 ms target and over LiteLLM's published 4.3 ms, and over LiteLLM's overhead
measured here when it ran. Each server's on-CPU and run-queue time over a phase's recorded
rounds (/proc/PID/task/*/schedstat) is divided by the requests it handled: what a proxied
request costs the router in CPU, apart from the latency. Before the warm-up every target
answers once in both modes and is checked (status 200, text, finish_reason, the router's
`x-mlx-manager-backend` header, the prompt's token count); a failure stops the run.

With --profile-s N, py-spy (on PATH or beside the interpreter) records the router's busy
samples for N s while non-streamed `router_exact` requests run; the JSON and the table get the
main thread by layer (`PLACES`, `PACKAGE_LAYERS`), self time by package and the top inclusive
functions per thread; the raw stacks go next to the router's log (`router.pyspy.txt`).

Writes `router_overhead.json` and `router_overhead.txt` (the table) under --out, with the
servers' logs and configs; the machine (benchmarks/lib/machine.py) and the commits measured are
in the JSON. The whole run stops within --budget-s (the rounds done by then are reported).

On the GPU machine: `PYTHONPATH=/tmp/site:$PWD python3 benchmarks/router_overhead.py --model DIR`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib.environment import BENCHMARKS, REPO, maybe_reexec_with_openblas
from benchmarks.lib.machine import machine_info, process_cpu_s, process_memory_mib, source_info
from benchmarks.lib.output import fmt, logger, timestamp, write_json, write_report
from benchmarks.lib.processes import free_port, stop_on_sigterm
from benchmarks.lib.pyspy import package_of, profile_server, self_time_by_package
from benchmarks.lib.server import ServerProcess, litellm_command
from benchmarks.lib.stats import Budget, latency_summary_ms, percentile

log = logger("router_overhead", clock=True)

PYSPY_RATE = 250  # samples/s (benchmarks/lib/pyspy.py)

TARGET_MS = 2.0  # issue 16: <= 2 ms p50 on a pass-through
LITELLM_PUBLISHED_MS = 4.3  # one independent localhost harness (shared/MANAGER.md)
BIFROST_PUBLISHED_MS = 0.44
PORTKEY_PUBLISHED_MS = 2.4
BACKEND_HEADER = "x-mlx-manager-backend"
PROMPTS = (
    "Name a colour.",
    "Hello",
    "Say one word.",
    "Count to three.",
    "What is the capital of France?",
    "Write a haiku.",
    "Pick a number.",
    "Tell me a story.",
)
MODES = ("nonstream", "stream")
FIGURES = {"nonstream": ("total",), "stream": ("total", "first_content")}
FIGURE_TEXT = {
    ("nonstream", "total"): "non-streaming: request -> whole JSON body",
    ("stream", "total"): "streaming: request -> last byte",
    ("stream", "first_content"): "streaming: request -> first content chunk",
}


# ---------------------------------------------------------------- targets and requests


@dataclass(slots=True)
class Target:
    name: str
    label: str
    base: str
    model: str
    backend: str | None  # the x-mlx-manager-backend the router should answer with
    client: httpx.Client = field(init=False)
    bodies: dict[str, bytes] = field(default_factory=dict)

    def open(self, timeout: float) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.client = httpx.Client(
            base_url=self.base, limits=limits, timeout=timeout, trust_env=False
        )

    def prepare(self, prompt: str, max_tokens: int) -> None:
        """The two request bodies, encoded once (the client's work is the same every time)."""
        for mode in MODES:
            body: dict[str, Any] = {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
            }
            if mode == "stream":
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
            self.bodies[mode] = json.dumps(body).encode()


@dataclass(slots=True)
class Sample:
    """One request: its times (s) and what it answered."""

    total: float | None = None
    first_content: float | None = None
    status: int | None = None
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    backend: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


HEADERS = {"content-type": "application/json"}
PATH = "/v1/chat/completions"


def send_nonstream(target: Target) -> Sample:
    body = target.bodies["nonstream"]
    try:
        started = time.perf_counter()
        response = target.client.post(PATH, content=body, headers=HEADERS)
        ended = time.perf_counter()
    except httpx.HTTPError as exc:
        return Sample(error=f"{type(exc).__name__}: {exc}")
    sample = Sample(total=ended - started, status=response.status_code)
    sample.backend = response.headers.get(BACKEND_HEADER)
    if response.status_code != 200:
        sample.error = f"status {response.status_code}: {response.text[:300]}"
        return sample
    try:
        reply = response.json()
        choice = reply["choices"][0]
        sample.text = choice["message"].get("content") or ""
        sample.finish_reason = choice.get("finish_reason")
        sample.usage = reply.get("usage")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        sample.error = f"bad body ({exc!r}): {response.text[:300]}"
    return sample


def send_stream(target: Target) -> Sample:
    """Time to the first chunk with content and to the last byte; the chunks' JSON is
    parsed only until the first content (the client's cost stays small)."""
    body = target.bodies["stream"]
    sample = Sample()
    lines: list[str] = []
    try:
        started = time.perf_counter()
        with target.client.stream("POST", PATH, content=body, headers=HEADERS) as response:
            sample.status = response.status_code
            sample.backend = response.headers.get(BACKEND_HEADER)
            if response.status_code != 200:
                response.read()
                sample.error = f"status {response.status_code}: {response.text[:300]}"
                return sample
            for line in response.iter_lines():
                if sample.first_content is None and line.startswith("data:"):
                    data = line[5:].strip()
                    if data != "[DONE]" and _delta_text(data):
                        sample.first_content = time.perf_counter() - started
                lines.append(line)
        sample.total = time.perf_counter() - started
    except httpx.HTTPError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
        return sample
    read_stream(sample, lines)
    return sample


def _delta_text(data: str) -> str:
    try:
        chunk = json.loads(data)
        return str(chunk["choices"][0]["delta"].get("content") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def read_stream(sample: Sample, lines: list[str]) -> None:
    """The text, finish_reason and usage of a finished stream; an error if it is not one."""
    done = False
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            sample.error = f"bad chunk: {data[:200]}"
            return
        if chunk.get("error"):
            sample.error = f"error event: {data[:300]}"
            return
        if chunk.get("usage"):
            sample.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            sample.text += (choice.get("delta") or {}).get("content") or ""
            sample.finish_reason = choice.get("finish_reason") or sample.finish_reason
    if not done:
        sample.error = "stream without [DONE]"


SENDERS: dict[str, Callable[[Target], Sample]] = {
    "nonstream": send_nonstream,
    "stream": send_stream,
}


def check(target: Target, mode: str, sample: Sample) -> str | None:
    """What is wrong with a validation answer (None: nothing)."""
    if not sample.ok:
        return sample.error
    if not sample.text:
        return "no text"
    if sample.finish_reason not in ("length", "stop"):
        return f"finish_reason {sample.finish_reason!r}"
    if target.backend is not None and sample.backend != target.backend:
        return f"{BACKEND_HEADER} {sample.backend!r}, expected {target.backend!r}"
    if mode == "stream" and sample.first_content is None:
        return "no content chunk"
    return None


def describe(sample: Sample) -> dict[str, Any]:
    return {
        "status": sample.status,
        "text": sample.text,
        "finish_reason": sample.finish_reason,
        "usage": sample.usage,
        "backend": sample.backend,
        "total_ms": None if sample.total is None else round(sample.total * 1000, 3),
        "error": sample.error,
    }


def choose_prompt(direct: Target, max_tokens: int) -> str:
    """The first candidate whose greedy answer on the upstream has visible text (a random
    model's first token may be an end token or a piece of a character)."""
    for prompt in PROMPTS:
        direct.prepare(prompt, max_tokens)
        sample = send_nonstream(direct)
        if sample.ok and sample.text.strip():
            return prompt
        log(f"prompt {prompt!r}: {sample.error or repr(sample.text)}; trying the next")
    raise SystemExit("no candidate prompt gives visible text on the upstream")


# ---------------------------------------------------------------- measuring


def rotated(targets: list[Target], round_no: int, order: str) -> list[Target]:
    if order == "fixed":
        return targets
    shift = round_no % len(targets)
    return targets[shift:] + targets[:shift]


def run_phase(
    targets: list[Target],
    mode: str,
    args: argparse.Namespace,
    budget: Budget,
    reserve: float,
    pids: dict[str, int],
) -> dict[str, Any]:
    """--warmup rounds, then up to --requests recorded rounds (fewer if the budget ends); each
    server's CPU and run-queue time over the recorded rounds."""
    send = SENDERS[mode]
    samples: dict[str, list[Sample]] = {t.name: [] for t in targets}
    gc.collect()
    gc.disable()  # a collection in the client would land on one target's sample
    started = time.monotonic()
    try:
        for round_no in range(args.warmup):
            for target in rotated(targets, round_no, args.order):
                send(target)
        warm_s = time.monotonic() - started
        cpu_before = {name: process_cpu_s(pid) for name, pid in pids.items()}
        for round_no in range(args.requests):
            if budget.left() < reserve:
                log(f"{mode}: budget reached after {round_no} rounds")
                break
            for target in rotated(targets, round_no, args.order):
                samples[target.name].append(send(target))
    finally:
        gc.enable()
    rounds = len(samples[targets[0].name])
    cpu = cpu_per_request(cpu_before, pids, targets, rounds)
    failures = {name: [s.error for s in got if not s.ok][:5] for name, got in samples.items()}
    log(
        f"{mode}: {rounds} rounds in {time.monotonic() - started - warm_s:.1f}s "
        f"(warm-up {warm_s:.1f}s); failed {sum(len(v) for v in failures.values())}"
    )
    return {
        "rounds": rounds,
        "warmup_rounds": args.warmup,
        "warmup_s": warm_s,
        "seconds": time.monotonic() - started,
        "failed": {name: sum(not s.ok for s in got) for name, got in samples.items()},
        "failures_first": {k: v for k, v in failures.items() if v},
        "server_cpu": cpu,
        "samples": samples,
    }


def served_by(server: str, targets: list[Target]) -> int:
    """How many of the targets send each round's request through `server`."""
    if server == "upstream":
        return len(targets)  # every request ends there
    if server == "litellm":
        return sum(t.name == "litellm" for t in targets)
    return sum(t.name.rsplit("_", 1)[0] == server for t in targets)


def cpu_per_request(
    before: dict[str, dict[str, float] | None],
    pids: dict[str, int],
    targets: list[Target],
    rounds: int,
) -> dict[str, Any]:
    """Each server's on-CPU and run-queue-wait ms per request it handled in the rounds."""
    result: dict[str, Any] = {}
    for name, pid in pids.items():
        start, end = before.get(name), process_cpu_s(pid)
        handled = served_by(name, targets) * rounds
        if start is None or end is None or not handled:
            continue
        result[name] = {
            "requests": handled,
            "cpu_ms_per_request": (end["cpu_s"] - start["cpu_s"]) * 1000 / handled,
            "runqueue_wait_ms_per_request": (
                (end["runqueue_wait_s"] - start["runqueue_wait_s"]) * 1000 / handled
            ),
        }
    return result


def times(samples: list[Sample], figure: str) -> list[float | None]:
    return [getattr(s, figure) if s.ok else None for s in samples]


def overhead(
    mine: list[float | None], direct: list[float | None], litellm_p50: float | None
) -> dict[str, Any]:
    """A proxied target against `direct`: paired differences and differences of percentiles
    (ms); the paired p50 over the 2 ms target and over LiteLLM's overhead (published and, if
    measured, this run's)."""
    pairs = [
        (m - d) * 1000 for m, d in zip(mine, direct, strict=True) if m is not None and d is not None
    ]
    own = [m * 1000 for m in mine if m is not None]
    base = [d * 1000 for d in direct if d is not None]
    paired_p50 = percentile(pairs, 50)

    def diff(q: float) -> float | None:
        a, b = percentile(own, q), percentile(base, q)
        return None if a is None or b is None else a - b

    return {
        "pairs": len(pairs),
        "paired_p50_ms": paired_p50,
        "paired_p90_ms": percentile(pairs, 90),
        "paired_p99_ms": percentile(pairs, 99),
        "paired_mean_ms": sum(pairs) / len(pairs) if pairs else None,
        "p50_diff_ms": diff(50),
        "p90_diff_ms": diff(90),
        "p99_diff_ms": diff(99),
        "paired_p50_over_2ms_target": None if paired_p50 is None else paired_p50 / TARGET_MS,
        "paired_p50_over_litellm_published": (
            None if paired_p50 is None else paired_p50 / LITELLM_PUBLISHED_MS
        ),
        "paired_p50_over_litellm_measured": (
            None if paired_p50 is None or not litellm_p50 else paired_p50 / litellm_p50
        ),
        "meets_2ms_p50": None if paired_p50 is None else paired_p50 <= TARGET_MS,
    }


def analyse(phase: dict[str, Any], mode: str, names: list[str]) -> dict[str, Any]:
    """Per figure: each target's latency summary and each proxied target's overhead."""
    samples = phase["samples"]
    result: dict[str, Any] = {}
    for figure in FIGURES[mode]:
        series = {name: times(samples[name], figure) for name in names}
        direct = series["direct"]
        litellm_p50 = None
        if "litellm" in series:
            litellm_p50 = overhead(series["litellm"], direct, None)["paired_p50_ms"]
        result[figure] = {
            "latency": {
                name: latency_summary_ms([v for v in values if v is not None])
                for name, values in series.items()
            },
            "overhead": {
                name: overhead(values, direct, None if name == "litellm" else litellm_p50)
                for name, values in series.items()
                if name != "direct"
            },
            "raw_ms": {
                name: [None if v is None else round(v * 1000, 4) for v in values]
                for name, values in series.items()
            },
        }
    return result


# ---------------------------------------------------------------- servers


def router_config(upstream: str, model: str, fillers: int) -> dict[str, Any]:
    """Providers on the upstream (both dialects); filler rules that never match; the three
    measured rules."""

    def route(pattern: str, match: str, provider: str) -> dict[str, Any]:
        targets = [{"provider": provider, "model": model}]
        return {"pattern": pattern, "match": match, "targets": targets}

    routes = [route(f"filler-exact-{i}", "exact", "up-openai") for i in range(fillers)]
    routes += [route(f"filler-p{i}-", "prefix", "up-openai") for i in range(fillers)]
    routes += [route(f"filler-r{i}-[a-z]+", "regex", "up-openai") for i in range(fillers)]
    routes += [
        route("bench-exact", "exact", "up-openai"),
        route("bench-re-[0-9]+", "regex", "up-openai"),
        route("bench-anthropic", "exact", "up-anthropic"),
    ]
    return {
        "providers": [
            {"name": "up-openai", "kind": "openai_compatible", "base_url": f"{upstream}/v1"},
            {"name": "up-anthropic", "kind": "anthropic", "base_url": upstream},
        ],
        "routes": routes,
    }


def litellm_config(upstream: str, model: str) -> dict[str, Any]:
    """One OpenAI-compatible model at the upstream's /v1; LiteLLM's own retries off."""
    params = {
        "model": f"openai/{model}",
        "api_base": f"{upstream}/v1",
        "api_key": "none",
        "max_retries": 0,
    }
    return {
        "model_list": [{"model_name": "bench-litellm", "litellm_params": params}],
        "litellm_settings": {"num_retries": 0, "request_timeout": 120, "telemetry": False},
        "router_settings": {"num_retries": 0},
    }


def litellm_env() -> dict[str, str]:
    """A clean environment for LiteLLM (not ours: no PYTHONPATH, no LD_PRELOAD); the model
    cost map from its own package, not the network."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        PYTHONUNBUFFERED="1",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY="False",
    )
    return env


def litellm_version(litellm_bin: Path) -> str | None:
    python = litellm_bin.parent / "python"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        return out.stdout.strip()
    return None


@contextlib.contextmanager
def model_dir(args: argparse.Namespace) -> Iterator[Path]:
    """--model, or a `tiny` random float32 model built from --tokenizer for this run."""
    if args.model is not None:
        yield args.model
        return
    tmp = Path(tempfile.mkdtemp(prefix="router-overhead-"))
    try:
        out = tmp / "bench-tiny"
        command = [sys.executable, str(BENCHMARKS / "make_random_model.py"), str(out)]
        command += ["--shape", "tiny", "--tokenizer", str(args.tokenizer), "--dtype", "float32"]
        log(f"building the model: {' '.join(command)}")
        subprocess.run(command, check=True, cwd=REPO)
        yield out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def start_servers(
    stack: contextlib.ExitStack, model: Path, args: argparse.Namespace
) -> dict[str, Any]:
    out = args.out
    upstream = stack.enter_context(
        ServerProcess.manager(model, out / "upstream.log", args.upstream_flags, src=args.src)
    )
    models = upstream.wait_health(args.start_timeout)
    served = models[0] if models else model.name
    log(f"upstream ready in {upstream.ready_s:.1f}s, model {served!r}")

    config = router_config(upstream.base, served, args.filler_rules)
    config_path = out / "router_config.json"
    write_json(config_path, config)
    empty = Path(tempfile.mkdtemp(prefix="router-overhead-empty-"))
    stack.callback(shutil.rmtree, empty, True)
    flags = ["--config", str(config_path), "--model-dir", str(empty), *args.router_flags]
    routers = {"router": args.router_src or args.src}
    if args.compare_src is not None:
        routers["router_b"] = args.compare_src
    started = {
        name: stack.enter_context(ServerProcess.manager(None, out / f"{name}.log", flags, src=src))
        for name, src in routers.items()
    }

    litellm = None
    if args.litellm_bin is not None:
        lite_path = out / "litellm_config.yaml"  # JSON is YAML
        write_json(lite_path, litellm_config(upstream.base, served))
        port = free_port()
        command = litellm_command(args.litellm_bin, lite_path, port)
        litellm = ServerProcess(
            "litellm", command, port, out / "litellm.log", cwd=out, env=litellm_env()
        )
        stack.enter_context(litellm)

    for name, router in started.items():
        router.wait_health(args.start_timeout)
        log(f"{name} ready in {router.ready_s:.1f}s")
    if litellm is not None:
        litellm.wait_http("/health/liveliness", args.start_timeout)
        log(f"litellm ready in {litellm.ready_s:.1f}s")
    return {"upstream": upstream, **started, "litellm": litellm, "served": served}


def router_targets(name: str, label: str, base: str, served: str) -> list[Target]:
    """A router's three measured rules."""
    return [
        Target(f"{name}_exact", f"{label}, exact rule", base, "bench-exact", f"up-openai/{served}"),
        Target(f"{name}_regex", f"{label}, regex rule", base, "bench-re-42", f"up-openai/{served}"),
        Target(
            f"{name}_anthropic",
            f"{label}, OpenAI -> Anthropic",
            base,
            "bench-anthropic",
            f"up-anthropic/{served}",
        ),
    ]


def make_targets(servers: dict[str, Any], args: argparse.Namespace) -> list[Target]:
    up, served = servers["upstream"], servers["served"]
    targets = [Target("direct", "direct to the upstream", up.base, served, None)]
    targets += router_targets("router", "router", servers["router"].base, served)
    if "router_b" in servers:
        targets += router_targets("router_b", "router B", servers["router_b"].base, served)
    if servers["litellm"] is not None:
        targets.append(
            Target("litellm", "LiteLLM proxy", servers["litellm"].base, "bench-litellm", None)
        )
    for target in targets:
        target.open(args.timeout)
    return targets


def validate(targets: list[Target]) -> dict[str, Any]:
    """One answer per target and mode, checked; SystemExit on the first wrong one."""
    report: dict[str, Any] = {}
    for target in targets:
        for mode in MODES:
            sample = SENDERS[mode](target)
            report[f"{target.name}/{mode}"] = describe(sample)
            problem = check(target, mode, sample)
            if problem is not None:
                raise SystemExit(f"{target.name} ({mode}) answered wrongly: {problem}")
    tokens = {k: (v["usage"] or {}).get("prompt_tokens") for k, v in report.items()}
    report["prompt_tokens"] = tokens
    log(f"validated every target; prompt tokens {sorted(set(tokens.values()), key=str)}")
    return report


# The router's main thread by layer. The first four take a sample by where it sits in the
# stack; the rest by the package of the innermost Python frame (its own code or a C call made
# from it). py-spy counts a thread that is runnable but waiting for a CPU as busy, so a C call
# that wakes another process (a socket write on loopback) collects the time the kernel gives
# that process first: compare with the CPU time in `server_cpu`.
PLACES: tuple[tuple[str, Callable[[list[str]], bool]], ...] = (
    ("socket write to the upstream (C send(), incl. waiting for a CPU)",
     lambda fr: fr[-1].startswith("SocketStream.send (anyio/")
     and any("AnyIOStream.write" in f for f in fr)),
    ("new TCP connection to the upstream", lambda fr: any("connect_tcp" in f for f in fr)),
    ("event loop in C (uvloop), no Python frame", lambda fr: fr[-1].startswith("Runner.run")),
    ("response write to the client (uvicorn)",
     lambda fr: any("RequestResponseCycle.send" in f for f in fr)),
)  # fmt: skip
PACKAGE_LAYERS = {
    "upstream client in Python (httpx, httpcore, h11, anyio, httpx-sse)": (
        "httpx", "httpcore", "h11", "anyio", "httpx_sse"),
    "FastAPI / Starlette / pydantic": ("fastapi", "starlette", "pydantic", "pydantic_core"),
    "uvicorn (HTTP parsing, protocol)": ("uvicorn",),
    "logging": ("logging",),
}  # fmt: skip


def layer_of(frames: list[str]) -> str:
    for name, match in PLACES:
        if match(frames):
            return name
    package = package_of(frames[-1])
    if package.startswith("mlx_manager"):
        return f"{package} (self)"
    for name, packages in PACKAGE_LAYERS.items():
        if package in packages:
            return name
    return "asyncio, stdlib, other (self)"


def layers_of(raw: str, thread_word: str = "MainThread") -> list[tuple[str, int]]:
    """Samples of the thread whose name holds `thread_word`, by layer, most first."""
    counts: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not count_text.isdigit() or thread_word not in frames[0] or len(frames) < 2:
            continue
        name = layer_of(frames[1:])
        counts[name] = counts.get(name, 0) + int(count_text)
    return sorted(counts.items(), key=lambda kv: -kv[1])


def profile_router(
    targets: list[Target], router: ServerProcess, seconds: int, out: Path
) -> dict[str, Any]:
    """py-spy on the router, busy samples only, while non-streamed exact-rule requests run;
    per thread: the summary, CPU ms per request and self time by package."""
    exact = next(t for t in targets if t.name == "router_exact")

    def one() -> float:
        sample = send_nonstream(exact)
        return round((sample.total or 0.0) * 1000, 3)

    log(f"py-spy on the router (pid {router.pid}) for {seconds}s, busy samples only")
    key = "request_ms_while_profiled"
    profile = profile_server(one, router.pid, seconds, out / "router.log", key, idle=False)
    if "threads" not in profile:
        return profile
    requests = len(profile[key])
    profile["requests"] = requests
    profile["request_ms_p50"] = percentile(profile[key], 50)
    raw = (out / profile["raw_file"]).read_text(errors="replace")
    by_package = self_time_by_package(raw)
    profile["main_thread_layers"] = layers_of(raw)
    for thread, entry in profile["threads"].items():
        entry["busy_ms_per_request"] = entry["samples"] / PYSPY_RATE * 1000 / max(requests, 1)
        entry["self_samples_by_package"] = by_package.get(thread, [])
    return profile


# ---------------------------------------------------------------- report


def table(result: dict[str, Any]) -> str:
    s = result["settings"]
    m = result["machine"]
    lines = [
        f"router_overhead: {result['time']}, commit {result['source'].get('commit', '?')[:10]}"
        f"{' (dirty)' if result['source'].get('mlx_manager_dirty') else ''}",
        f"machine: {m['platform']}, {m['cpu_count']} cores, {m.get('gpu') or 'no GPU'}, "
        f"MLX {m['mlx']} on {m['default_device']}, load {m['load_average_1_5_15min_at_end']}, "
        f"event loop {m.get('event_loop', '?')}",
        f"model: {result['model']['served']} ({result['model']['path']}); prompt "
        f"{result['prompt']!r}, max_tokens {s['max_tokens']}, temperature 0",
        f"{s['requests']} rounds after {s['warmup']} warm-up, sequential, one kept-alive "
        f"connection per target, order {s['order']}; router rules: {s['filler_rules']} x 3 "
        f"fillers + 3 measured",
    ]
    for key, name in (("router_source", "router"), ("router_b_source", "router B")):
        if key in result:
            lines.append(
                f"{name}: mlx_manager from {result[key].get('src')} (commit "
                f"{result[key].get('commit', '?')})"
            )
    if result.get("litellm"):
        lines.append(f"LiteLLM {result['litellm'].get('version')} (retries off)")
    lines.append("")
    head = ("target", "n", "p50", "p90", "p99", "mean", "ovh p50", "ovh p99", "p50 diff",
            "p99 diff", "/2ms", "/LiteLLM 4.3")  # fmt: skip
    for mode in MODES:
        phase = result["phases"].get(mode)
        if not phase or "figures" not in phase:
            lines.append(f"{mode}: {phase.get('error') if phase else 'not run'}")
            continue
        lines.append(cpu_line(mode, phase))
        for figure in FIGURES[mode]:
            data = phase["figures"][figure]
            rows = [head]
            for name, lat in data["latency"].items():
                o = data["overhead"].get(name)
                rows.append(
                    (
                        result["labels"][name],
                        str(lat["n"]),
                        fmt(lat["p50_ms"], 2),
                        fmt(lat["p90_ms"], 2),
                        fmt(lat["p99_ms"], 2),
                        fmt(lat["mean_ms"], 2),
                        *(
                            (
                                fmt(o["paired_p50_ms"], 2),
                                fmt(o["paired_p99_ms"], 2),
                                fmt(o["p50_diff_ms"], 2),
                                fmt(o["p99_diff_ms"], 2),
                                fmt(o["paired_p50_over_2ms_target"], 2),
                                fmt(o["paired_p50_over_litellm_published"], 2),
                            )
                            if o
                            else ("",) * 6
                        ),
                    )
                )
            lines.append(f"{FIGURE_TEXT[(mode, figure)]} (ms)")
            lines += aligned(rows)
            lines.append("")
    lines += [
        "ovh p50 / p99: percentiles of the paired differences (the target's sample minus the",
        "direct sample of the same round); p50 / p99 diff: the target's percentile minus the",
        "direct one's; /2ms and /LiteLLM 4.3: ovh p50 over issue 16's target and over LiteLLM's",
        f"published overhead (Bifrost {BIFROST_PUBLISHED_MS} ms, Portkey "
        f"{PORTKEY_PUBLISHED_MS} ms on the same harness).",
    ]
    lines += measured_litellm_lines(result)
    lines += profile_lines(result.get("profile"))
    return "\n".join(lines)


def cpu_line(mode: str, phase: dict[str, Any]) -> str:
    parts = [
        f"{name} {c['cpu_ms_per_request']:.2f} on CPU + {c['runqueue_wait_ms_per_request']:.2f} "
        "waiting for one"
        for name, c in phase.get("server_cpu", {}).items()
    ]
    return f"{mode}: ms per request each server handled: " + "; ".join(parts)


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


def measured_litellm_lines(result: dict[str, Any]) -> list[str]:
    phase = result["phases"].get("nonstream") or {}
    data = (phase.get("figures") or {}).get("total")
    if not data or "litellm" not in data["overhead"]:
        return []
    lines = ["", "router overhead over LiteLLM's overhead measured in this run (paired p50s):"]
    for mode in MODES:
        for figure in FIGURES[mode]:
            f = ((result["phases"].get(mode) or {}).get("figures") or {}).get(figure)
            if not f:
                continue
            parts = [
                f"{name} {fmt(o['paired_p50_over_litellm_measured'], 2)}"
                for name, o in f["overhead"].items()
                if name != "litellm"
            ]
            lines.append(f"  {FIGURE_TEXT[(mode, figure)]}: {', '.join(parts)}")
    return lines


def profile_lines(profile: dict[str, Any] | None, top: int = 10) -> list[str]:
    if not profile:
        return []
    if "threads" not in profile:
        return ["", f"py-spy: {profile.get('error')}"]
    lines = [
        "",
        f"py-spy on the router, busy samples only ({PYSPY_RATE} Hz), during "
        f"{profile['requests']} non-streamed exact-rule requests (p50 "
        f"{fmt(profile['request_ms_p50'], 2)} ms):",
    ]
    layers = profile.get("main_thread_layers") or []
    total = sum(c for _, c in layers)
    if total:
        per_request = total / PYSPY_RATE * 1000 / max(profile["requests"], 1)
        lines.append(f"  main thread by layer ({per_request:.2f} ms of busy samples per request):")
        lines += [f"    {c / total:6.1%}  {name}" for name, c in layers if c]
    for thread, entry in profile["threads"].items():
        samples = entry["samples"]
        lines.append(
            f"  {thread}: {samples} busy samples = {entry['busy_ms_per_request']:.2f} ms per request"
        )
        lines.append("    self time by package (share of the thread's samples):")
        for package, count in entry["self_samples_by_package"][:top]:
            lines.append(f"      {count / samples:6.1%}  {package}")
    return lines


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="the upstream's model directory")
    source.add_argument(
        "--tokenizer", type=Path, help="build a `tiny` random float32 model with this tokenizer"
    )
    add("--out", type=Path, default=REPO / "benchmarks" / "results" / "router_overhead")
    add("--budget-s", type=float, default=420.0, help="the whole run")
    add("--requests", type=int, default=300, help="recorded rounds per phase")
    add("--warmup", type=int, default=20, help="unrecorded rounds per phase")
    add("--max-tokens", type=int, default=1)
    add("--order", choices=("rotate", "fixed"), default="rotate")
    add("--filler-rules", type=int, default=10, help="never-matching rules of each kind")
    add("--litellm-bin", type=Path, help="LiteLLM's `litellm` executable (its own venv)")
    add("--profile-s", type=int, default=0, help="py-spy on the router afterwards")
    add("--timeout", type=float, default=60.0, help="one request")
    add("--start-timeout", type=float, default=180.0)
    add("--src", type=Path, default=REPO, help="import mlx_manager from DIR (both servers)")
    add("--router-src", type=Path, help="the router's mlx_manager from DIR (default: --src)")
    add(
        "--compare-src",
        type=Path,
        help="a second router (B) importing mlx_manager from DIR, measured interleaved too",
    )
    add("--upstream-args", default="", help="extra flags of the upstream MLX Manager")
    add("--router-args", default="", help="extra flags of the router MLX Manager")
    args = parser.parse_args(argv)
    args.upstream_flags = args.upstream_args.split()
    args.router_flags = args.router_args.split()
    return args


def main(argv: list[str] | None = None) -> int:
    maybe_reexec_with_openblas()  # the servers re-exec the same way: one environment
    args = parse_args(argv)
    stop_on_sigterm()
    budget = Budget(args.budget_s)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("upstream_flags", "router_flags")
    }
    result: dict[str, Any] = {"benchmark": "router_overhead", "time": timestamp()}
    result["settings"] = settings
    result["published_overhead_ms"] = {
        "litellm": LITELLM_PUBLISHED_MS,
        "portkey": PORTKEY_PUBLISHED_MS,
        "bifrost": BIFROST_PUBLISHED_MS,
        "target_p50": TARGET_MS,
    }
    with model_dir(args) as model, contextlib.ExitStack() as stack:
        servers = start_servers(stack, model, args)
        targets = make_targets(servers, args)
        for target in targets:
            stack.callback(target.client.close)
        result["model"] = {"path": str(model), "served": servers["served"]}
        prompt = choose_prompt(targets[0], args.max_tokens)
        for target in targets:
            target.prepare(prompt, args.max_tokens)
        result["prompt"] = prompt
        result["labels"] = {t.name: t.label for t in targets}
        result["validation"] = validate(targets)
        names = [t.name for t in targets]
        pids = {
            name: server.pid
            for name in ("upstream", "router", "router_b", "litellm")
            if (server := servers.get(name)) is not None
        }
        reserve = 30.0 + args.profile_s
        result["phases"] = {}
        for i, mode in enumerate(MODES):
            # the budget left is shared by the phases still to come
            phase_reserve = reserve + (budget.left() - reserve) / 2 if i == 0 else reserve
            phase = run_phase(targets, mode, args, budget, phase_reserve, pids)
            phase["figures"] = analyse(phase, mode, names)
            del phase["samples"]
            result["phases"][mode] = phase
        if args.profile_s > 0:
            result["profile"] = profile_router(targets, servers["router"], args.profile_s, args.out)
        result["servers"] = {
            name: {
                "command": server.command,
                "ready_s": server.ready_s,
                "memory_mib": process_memory_mib(server.pid),
            }
            for name in ("upstream", "router", "router_b", "litellm")
            if (server := servers.get(name)) is not None
        }
    if args.litellm_bin is not None:
        result["litellm"] = {
            "bin": str(args.litellm_bin),
            "version": litellm_version(args.litellm_bin),
        }
    result["machine"] = machine_info()
    result["source"] = source_info(args.src)
    if args.router_src is not None:
        result["router_source"] = source_info(args.router_src)
    if args.compare_src is not None:
        result["router_b_source"] = source_info(args.compare_src)
    result["elapsed_s"] = budget.elapsed()
    write_report(args.out, "router_overhead", result, table(result))
    log(f"wrote {args.out} in {budget.elapsed():.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

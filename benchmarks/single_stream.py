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
import contextlib
import gc
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import mlx.core as mx

REPO = Path(__file__).resolve().parents[1]
SRC_ENV = "BENCH_MLX_MANAGER_SRC"  # where `mlx_manager` is imported from (default: this repo)

OPENBLAS = Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0")
CPU_FLOAT32_MAX_GB = 2.0  # the server's default --cpu-float32-max-gb
PREFILL_STEP_SIZE = 2048  # the server's default --prefill-step-size (and mlx-lm's)
STOP_BIAS = -100.0  # the most negative logit_bias the OpenAI API accepts
SYSTEM_PROMPT = "You are a helpful assistant."
USER_PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who finds a hidden library under "
    "the lighthouse. Describe every room, every book and every visitor, one after the other."
)
FILLER = (
    " Keep the tone calm and precise, name each character, and never stop before the story "
    "has reached its natural end."
)
STAGES = ("reference", "engine", "runner", "server")
DEFAULT_STAGES = ("reference", "engine", "server")


@dataclass(slots=True)
class RunResult:
    """One timed generation. Times in seconds; rates in tokens per second."""

    tokens: int
    decode_tps: float
    ttft_s: float
    total_s: float
    prefill_tps: float | None = None
    generation_tps: float | None = None  # mlx-lm's own figure (reference only)
    chunks: int | None = None  # SSE content chunks (server only)
    finish_reason: str | None = None
    text_head: str = ""


@dataclass(slots=True)
class StageResult:
    name: str
    runs: list[RunResult] = field(default_factory=list)
    load_s: float | None = None
    token_ids: list[int] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def median(self, key: str) -> float | None:
        values = [getattr(r, key) for r in self.runs if getattr(r, key) is not None]
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        keys = ("decode_tps", "ttft_s", "prefill_tps", "generation_tps", "total_s")
        return {
            "runs": [asdict(r) for r in self.runs],
            "median": {k: self.median(k) for k in keys if self.median(k) is not None},
            "load_s": self.load_s,
            **self.info,
        }


# ---------------------------------------------------------------- the model and the prompt


def resolve_model(name: str) -> Path:
    if name == "embedded":
        from mlx_manager.models.default_model import ensure_embedded_model

        return ensure_embedded_model()
    path = Path(name).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise SystemExit(f"{path} is not a model directory (no config.json)")
    return path


def chat_messages(repeat: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PROMPT + FILLER * repeat},
    ]


@dataclass(frozen=True, slots=True)
class PromptPlan:
    ids: list[int]
    stop_ids: list[int]  # EOS + end-of-turn ids the server stops on: all banned


def plan_prompt(path: Path, tokenizer: Any, messages: list[dict[str, str]]) -> PromptPlan:
    """The prompt exactly as the server renders it, and the ids the server would stop on."""
    from mlx_manager.models.families import detect_family

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    family = detect_family(config, path.name)
    ids = family.render_prompt(tokenizer, messages)
    stops = set(family.stop_token_ids(tokenizer)) | {int(i) for i in tokenizer.eos_token_ids}
    return PromptPlan(ids, sorted(stops))


def load_plan(path: Path, messages: list[dict[str, str]]) -> PromptPlan:
    """The tokenizer as `mlx_lm.load` builds it (EOS ids from config.json too), then the plan."""
    from mlx_lm.utils import load_tokenizer

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
    return plan_prompt(path, tokenizer, messages)


def free_mlx() -> None:
    gc.collect()
    mx.clear_cache()


# ---------------------------------------------------------------- in-process stages


class ReferenceSession:
    """mlx-lm in-process: `mlx_lm.load`, densified as the server does on CPU."""

    name = "reference"

    def __init__(self, path: Path, plan: PromptPlan, args: argparse.Namespace) -> None:
        import mlx_lm
        from mlx_lm.sample_utils import make_logits_processors

        from mlx_manager.models.cpu_precision import densify_for_cpu

        self.stage = StageResult(self.name)
        start = time.perf_counter()
        loaded = mlx_lm.load(str(path))
        self._model, self._tokenizer = loaded[0], loaded[1]
        self.stage.info["densified_float32"] = densify_for_cpu(self._model, CPU_FLOAT32_MAX_GB)
        self.stage.load_s = time.perf_counter() - start
        self._plan = plan
        self._max_tokens = args.max_tokens
        self._processors = make_logits_processors(
            logit_bias=dict.fromkeys(plan.stop_ids, STOP_BIAS)
        )

    def run_once(self) -> tuple[RunResult, list[int]]:
        import mlx_lm
        from mlx_lm.sample_utils import make_sampler

        stamps: list[float] = []
        ids: list[int] = []
        text: list[str] = []
        last: Any = None
        t0 = time.perf_counter()
        for response in mlx_lm.stream_generate(
            self._model,
            self._tokenizer,
            self._plan.ids,
            max_tokens=self._max_tokens,
            sampler=make_sampler(temp=0.0),
            logits_processors=self._processors,
            prefill_step_size=PREFILL_STEP_SIZE,
        ):
            stamps.append(time.perf_counter())
            ids.append(int(response.token))
            text.append(response.text)
            last = response
        result = RunResult(
            tokens=len(ids),
            decode_tps=rate(len(ids), stamps),
            ttft_s=stamps[0] - t0,
            total_s=stamps[-1] - t0,
            prefill_tps=float(last.prompt_tps),
            generation_tps=float(last.generation_tps),
            finish_reason=last.finish_reason,
            text_head="".join(text)[:80],
        )
        return result, ids

    def close(self) -> None:
        del self._model, self._tokenizer, self._processors


def load_server_model(path: Path) -> Any:
    """The model as the server loads it (`load_text_model`, densified on CPU)."""
    from mlx_manager.models.loaded import load_text_model
    from mlx_manager.models.sources import ModelSpec

    return load_text_model(ModelSpec(path.name, str(path)), path, None, CPU_FLOAT32_MAX_GB)


def banned_stop_params(plan: PromptPlan, max_tokens: int) -> Any:
    """Greedy sampling with every stop id banned, as the server stage asks for it."""
    from mlx_manager.types import SamplingParams

    return SamplingParams(
        max_tokens=max_tokens,
        temperature=0.0,
        logit_bias=tuple((i, STOP_BIAS) for i in plan.stop_ids),
    )


class RunnerSession:
    """The server's runner and output builder in a plain loop: no HTTP, no engine thread."""

    name = "runner"

    def __init__(self, path: Path, plan: PromptPlan, args: argparse.Namespace) -> None:
        self.stage = StageResult(self.name)
        start = time.perf_counter()
        self._loaded = load_server_model(path)
        self.stage.load_s = time.perf_counter() - start
        self._plan = plan
        self._max_tokens = args.max_tokens
        self._params = banned_stop_params(plan, args.max_tokens)
        self._number = 0

    def run_once(self) -> tuple[RunResult, list[int]]:
        from mlx_manager.engine.output import OutputBuilder
        from mlx_manager.engine.request import EngineRequest
        from mlx_manager.runner.generation import SequenceRunner

        self._number += 1
        loaded, plan = self._loaded, self._plan
        request = EngineRequest(
            f"r{self._number}", "m", tuple(plan.ids), self._params, self._max_tokens
        )
        output = OutputBuilder(request, loaded.tokenizer, loaded.stop_token_ids)
        t0 = time.perf_counter()
        runner = SequenceRunner(
            loaded.model, plan.ids, self._params, self._max_tokens, PREFILL_STEP_SIZE
        )
        stamps: list[float] = []
        ids: list[int] = []
        text: list[str] = []
        reason = None
        while (step := runner.next()) is not None:
            stamps.append(time.perf_counter())
            ids.append(step.token)
            event = output.add(step)
            if event is not None:
                text.append(event.text)
                if event.finished:
                    reason = str(event.finish_reason)
                    break
        runner.close()
        result = RunResult(
            tokens=len(ids),
            decode_tps=rate(len(ids), stamps),
            ttft_s=stamps[0] - t0,
            total_s=stamps[-1] - t0,
            prefill_tps=len(plan.ids) / (stamps[0] - t0),
            finish_reason=reason,
            text_head="".join(text)[:80],
        )
        return result, ids

    def close(self) -> None:
        del self._loaded


class EngineSession:
    """The server's paged engine stepped in a plain loop: no HTTP, no engine thread."""

    name = "engine"

    def __init__(self, path: Path, plan: PromptPlan, args: argparse.Namespace) -> None:
        from mlx_manager.config import load_settings
        from mlx_manager.engine.paged_engine import PagedModelEngine
        from mlx_manager.kv.paged_storage import probe_kv_layout

        self.stage = StageResult(self.name)
        start = time.perf_counter()
        self._loaded = load_server_model(path)
        layout = probe_kv_layout(self._loaded.model)
        if layout is None:
            raise SystemExit(f"{path}: not a paged model; use --stages reference,runner,server")
        self._engine = PagedModelEngine(self._loaded, layout, load_settings({}).engine())
        self.stage.load_s = time.perf_counter() - start
        self.stage.info["kv_cache"] = self._engine.describe()
        self._plan = plan
        self._max_tokens = args.max_tokens
        self._params = banned_stop_params(plan, args.max_tokens)
        self._number = 0

    def run_once(self) -> tuple[RunResult, list[int]]:
        from mlx_manager.engine.request import EngineRequest

        self._number += 1
        engine, plan = self._engine, self._plan
        request = EngineRequest(
            f"e{self._number}", "m", tuple(plan.ids), self._params, self._max_tokens
        )
        t0 = time.perf_counter()
        engine.add(request)
        stamps: list[float] = []
        ids: list[int] = []
        text: list[str] = []
        reason = None
        while engine.has_work():
            for event in engine.step():
                now = time.perf_counter()
                stamps += [now] * len(event.token_ids)
                ids += event.token_ids
                text.append(event.text)
                if event.finished:
                    reason = str(event.finish_reason)
        result = RunResult(
            tokens=len(ids),
            decode_tps=rate(len(ids), stamps),
            ttft_s=stamps[0] - t0,
            total_s=stamps[-1] - t0,
            prefill_tps=len(plan.ids) / (stamps[0] - t0),
            finish_reason=reason,
            text_head="".join(text)[:80],
        )
        return result, ids

    def close(self) -> None:
        del self._engine, self._loaded


def record(session: Session, round_number: int | None = None) -> RunResult:
    result, ids = session.run_once()
    session.stage.runs.append(result)
    if ids is not None:
        session.stage.token_ids = ids
    where = f" round {round_number}" if round_number is not None else ""
    log(f"{session.name}{where}: {result.decode_tps:.1f} tok/s decode ({result.tokens} tokens)")
    return result


def measure_sequential(
    open_session: Callable[[str], Session], names: list[str], runs: int
) -> dict[str, StageResult]:
    """One stage at a time: load, warm up once, time `runs`, free, then the next stage."""
    stages: dict[str, StageResult] = {}
    for name in names:
        session = open_session(name)
        try:
            session.run_once()  # warm-up: compiles every kernel and KV-cache shape
            for _ in range(runs):
                record(session)
        finally:
            session.close()
            free_mlx()
        stages[name] = session.stage
    return stages


def measure_interleaved(
    open_session: Callable[[str], Session], names: list[str], runs: int
) -> tuple[dict[str, StageResult], list[dict[str, float]]]:
    """All stages loaded at once (never running together), one run of each per round.

    The order rotates every round, so slow drift of the machine (clocks, neighbours) falls on
    every stage alike; each round also gives its own server/reference ratio.
    """
    sessions: list[Session] = []
    try:
        for name in names:
            sessions.append(open_session(name))
        for session in sessions:
            session.run_once()  # warm-up
        rounds: list[dict[str, float]] = []
        for number in range(runs):
            shift = number % len(sessions)
            decode: dict[str, float] = {}
            for session in sessions[shift:] + sessions[:shift]:
                decode[session.name] = record(session, number + 1).decode_tps
            rounds.append(decode)
    finally:
        for session in sessions:
            session.close()
        free_mlx()
    return {s.name: s.stage for s in sessions}, rounds


def rate(tokens: int, stamps: list[float]) -> float:
    """(tokens - 1) / (last - first): the decode rate, prefill and first token left out."""
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    return (tokens - 1) / span if span > 0 else float("nan")


# ---------------------------------------------------------------- the server stage


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env[SRC_ENV] = str(src)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    return env


@contextlib.contextmanager
def server_process(
    path: Path, port: int, log_path: Path, src: Path, plain: bool, extra: list[str]
) -> Iterator[subprocess.Popen[bytes]]:
    """The server as a child process (stdout+stderr to log_path); stopped on exit.

    It runs in `src`, so `-m mlx_manager.cli` imports the package from there.
    """
    if plain:
        launcher = ["-m", "mlx_manager.cli"]
    else:
        launcher = [str(REPO / "benchmarks" / "serve_logging_device.py")]
    command = [sys.executable, *launcher, "serve", "--model", str(path), "--port", str(port)]
    command += ["--log-level", "warning", *extra]
    log(f"server: {' '.join(command)} (log {log_path})")
    with log_path.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=src, env=server_env(src), stdout=sink, stderr=sink)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # SIGINT ends in a KeyboardInterrupt trace
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)


def wait_ready(
    client: httpx.Client, proc: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> str:
    """Poll /health until 200; returns the served model id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            response = client.get("/health", timeout=2.0)
            if response.status_code == 200:
                models: list[str] = response.json()["models"]
                return models[0]
        time.sleep(0.25)
    raise RuntimeError(f"server not ready after {timeout:.0f}s")


def stream_chat(client: httpx.Client, payload: dict[str, Any]) -> RunResult:
    """One streamed chat completion, timed chunk by chunk as the client sees it."""
    t0 = time.perf_counter()
    first = last = finish_at = None
    chunks = 0
    usage: dict[str, Any] = {}
    reason = None
    text: list[str] = []
    with client.stream("POST", "/v1/chat/completions", json=payload) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            now = time.perf_counter()
            body = json.loads(data)
            if "error" in body:
                raise RuntimeError(f"server error: {body['error']}")
            if body.get("usage"):
                usage = body["usage"]
            for choice in body.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    chunks += 1
                    first = now if first is None else first
                    last = now
                    text.append(content)
                if choice.get("finish_reason"):
                    reason = choice["finish_reason"]
                    finish_at = now
    if first is None or not usage:
        raise RuntimeError("the stream had no content or no usage chunk")
    tokens = int(usage["completion_tokens"])
    end = finish_at or last or first
    return RunResult(
        tokens=tokens,
        decode_tps=(tokens - 1) / (end - first) if end > first else float("nan"),
        ttft_s=first - t0,
        total_s=end - t0,
        prefill_tps=int(usage["prompt_tokens"]) / (first - t0),
        chunks=chunks,
        finish_reason=reason,
        text_head="".join(text)[:80],
    )


class ServerSession:
    """`mlx_manager.cli serve` as a child process, measured over streamed chat completions."""

    name = "server"

    def __init__(
        self,
        path: Path,
        messages: list[dict[str, str]],
        plan: PromptPlan,
        args: argparse.Namespace,
        log_path: Path,
    ) -> None:
        self.stage = StageResult(self.name)
        self._args = args
        self._log_path = log_path
        self._stack = contextlib.ExitStack()
        port = free_port()
        start = time.perf_counter()
        extra = list(args.server_arg or [])
        try:
            self._proc = self._stack.enter_context(
                server_process(path, port, log_path, args.src, args.plain_server, extra)
            )
            self._client = self._stack.enter_context(
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=args.request_timeout)
            )
            model_id = wait_ready(self._client, self._proc, log_path, args.server_timeout)
        except BaseException:
            self._stack.close()
            raise
        self.stage.load_s = time.perf_counter() - start
        self.stage.info["pid"] = self._proc.pid
        self.stage.info["device"] = server_device(log_path)
        self.stage.info["ld_preload"] = process_env(self._proc.pid).get("LD_PRELOAD", "")
        self._payload = {
            "model": model_id,
            "messages": messages,
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logit_bias": {str(i): STOP_BIAS for i in plan.stop_ids},
        }

    def run_once(self) -> tuple[RunResult, None]:
        return stream_chat(self._client, self._payload), None

    def close(self) -> None:
        try:
            self.stage.info["gpu_memory_mib"] = gpu_memory_of(self._proc.pid)
            if self._args.profile_s > 0:
                self.stage.info["profile"] = profile_server(
                    self._client, self._payload, self._proc.pid, self._args, self._log_path
                )
        finally:
            self._stack.close()


Session = ReferenceSession | EngineSession | RunnerSession | ServerSession


def process_env(pid: int) -> dict[str, str]:
    """The environment a (possibly re-exec'd) process runs with; empty where unreadable."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def server_device(log_path: Path) -> str | None:
    found = re.search(r"default_device=(.+)", log_path.read_text(errors="replace"))
    return found.group(1).strip() if found else None


def profile_server(
    client: httpx.Client,
    payload: dict[str, Any],
    pid: int,
    args: argparse.Namespace,
    log_path: Path,
) -> dict[str, Any]:
    """py-spy on the server during one more streamed request: where each thread spends time."""
    import shutil

    spy = shutil.which("py-spy")
    if spy is None:
        return {"error": "py-spy not on PATH"}
    raw = log_path.with_suffix(".pyspy.txt")
    command = [spy, "record", "--pid", str(pid), "--duration", str(args.profile_s)]
    command += ["--rate", "250", "--threads", "--idle", "--nonblocking", "--format", "raw"]
    command += ["--output", str(raw)]
    spy_proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    results: list[RunResult] = []
    deadline = time.monotonic() + args.profile_s - 1.5
    while time.monotonic() < deadline:
        results.append(stream_chat(client, payload))
    _, err = spy_proc.communicate(timeout=args.profile_s + 60)
    if spy_proc.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed: {err.decode(errors='replace')[-500:]}"}
    summary = summarize_pyspy(raw.read_text(errors="replace"))
    summary["raw_file"] = raw.name
    summary["decode_tps_while_profiled"] = [r.decode_tps for r in results]
    return summary


def summarize_pyspy(raw: str, top: int = 15) -> dict[str, Any]:
    """Collapsed py-spy stacks -> per thread: samples, top leaf lines, top inclusive functions.

    Inclusive counts strip line numbers and count a function once per sample, so
    `generate_step` there is all the time spent inside mlx-lm's step (model graph building,
    waiting for the device) and `_run` the whole engine loop.
    """
    threads: dict[str, dict[str, dict[str, int]]] = {}
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        count = int(count_text)
        entry = threads.setdefault(frames[0], {"total": {}, "leaf": {}, "inclusive": {}})
        entry["total"]["samples"] = entry["total"].get("samples", 0) + count
        leaf = frames[-1] if len(frames) > 1 else "(idle)"
        entry["leaf"][leaf] = entry["leaf"].get(leaf, 0) + count
        for function in {re.sub(r":\d+\)$", ")", f) for f in frames[1:]}:
            entry["inclusive"][function] = entry["inclusive"].get(function, 0) + count

    def ranked(counts: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(counts.items(), key=lambda kv: -kv[1])[:top]

    return {
        "threads": {
            thread: {
                "samples": entry["total"]["samples"],
                "top_leaf_lines": ranked(entry["leaf"]),
                "top_inclusive_functions": ranked(entry["inclusive"]),
            }
            for thread, entry in threads.items()
        }
    }


# ---------------------------------------------------------------- machine info and report


def gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def gpu_memory_of(pid: int) -> int | None:
    """MiB of GPU memory held by `pid` per nvidia-smi (None without an NVIDIA GPU)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            return int(parts[1])
    return 0


def machine_info() -> dict[str, Any]:
    import mlx_lm

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "mlx": getattr(mx, "__version__", "?"),
        "mlx_lm": mlx_lm.__version__,
        "default_device": str(mx.default_device()),
        "gpu": gpu_name(),
        "load_average_1_5_15min_at_end": list(os.getloadavg()),
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
    }


def source_info(src: Path) -> dict[str, Any]:
    """Which mlx_manager code ran: a snapshot's COMMIT file, or this checkout's HEAD + dirt."""
    import mlx_manager

    info: dict[str, Any] = {"src": str(src), "imported_from": str(mlx_manager.__file__)}
    if (src / "COMMIT").is_file():
        info["commit"] = (src / "COMMIT").read_text().strip()
        info["snapshot"] = True
        return info
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(src)]
        info["commit"] = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "mlx_manager"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        info["mlx_manager_dirty"] = bool(dirty.strip())
    return info


def model_info(path: Path) -> dict[str, Any]:
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    keys = (
        "model_type",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "vocab_size",
        "tie_word_embeddings",
        "torch_dtype",
        "quantization",
    )
    weights = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    return {
        "path": str(path),
        "name": path.name,
        "weights_bytes": weights,
        **{k: config[k] for k in keys if k in config},
    }


def report(stages: dict[str, StageResult]) -> tuple[str, dict[str, float | None]]:
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
    for name, value in ratios.items():
        if value is not None:
            lines.append(f"{name}: {value:.3f}")
    return "\n".join(lines), ratios


def ratio_table(stages: dict[str, StageResult]) -> dict[str, float | None]:
    def ratio(top: str, bottom: str, key: str = "decode_tps") -> float | None:
        a = stages[top].median(key) if top in stages else None
        b = stages[bottom].median(key) if bottom in stages else None
        return a / b if a and b else None

    reference_gtps = stages["reference"].median("generation_tps") if "reference" in stages else None
    server = stages["server"].median("decode_tps") if "server" in stages else None
    return {
        "server_over_reference_decode": ratio("server", "reference"),
        "engine_over_reference_decode": ratio("engine", "reference"),
        "server_over_engine_decode": ratio("server", "engine"),
        "runner_over_reference_decode": ratio("runner", "reference"),
        "server_over_runner_decode": ratio("server", "runner"),
        "server_over_reference_generation_tps": (
            server / reference_gtps if server and reference_gtps else None
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


def log(message: str) -> None:
    print(f"[single_stream] {message}", file=sys.stderr, flush=True)


def maybe_reexec_with_openblas() -> None:
    """Run under the environment the server gives itself.

    `mlx_manager.cli serve` re-executes itself with OpenBLAS preloaded on Linux whenever the
    library exists (it makes MLX's CPU matmuls ~10x faster). The in-process stages must run
    under the same LD_PRELOAD, on CPU and GPU alike, or the comparison is not like for like.
    """
    if (
        sys.platform != "linux"
        or not OPENBLAS.exists()
        or "openblas" in os.environ.get("LD_PRELOAD", "")
    ):
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = os.pathsep.join(p for p in (str(OPENBLAS), env.get("LD_PRELOAD")) if p)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        default=REPO,
        help="directory holding the mlx_manager package to benchmark (e.g. a `git archive` "
        "snapshot of a commit); default: this checkout",
    )
    args = parser.parse_args(argv)
    args.src = args.src.resolve()
    if not (args.src / "mlx_manager" / "__init__.py").is_file():
        parser.error(f"no mlx_manager package in {args.src}")
    args.stage_list = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(args.stage_list) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    maybe_reexec_with_openblas()
    args = parse_args(argv)
    sys.path.insert(0, str(args.src))  # before any mlx_manager import
    path = resolve_model(args.model)
    messages = chat_messages(args.prompt_repeat)
    log_dir = args.log_dir or (args.out.parent if args.out else Path.cwd())
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out.stem if args.out else "single_stream"
    log(f"model {path} on {mx.default_device()}; stages {args.stage_list}")

    load_at_start = list(os.getloadavg())
    plan = load_plan(path, messages)
    log(f"prompt: {len(plan.ids)} tokens; banned stop ids {plan.stop_ids}")

    log_path = log_dir / f"{stem}.server.log"

    def open_session(name: str) -> Session:
        if name == "reference":
            return ReferenceSession(path, plan, args)
        if name == "engine":
            return EngineSession(path, plan, args)
        if name == "runner":
            return RunnerSession(path, plan, args)
        return ServerSession(path, messages, plan, args, log_path)

    if args.interleave:
        stages, rounds = measure_interleaved(open_session, args.stage_list, args.runs)
    else:
        stages, rounds = measure_sequential(open_session, args.stage_list, args.runs), []

    table, ratios = report(stages)
    print(table)
    result = {
        "benchmark": "single_stream",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {**machine_info(), "load_average_1_5_15min_at_start": load_at_start},
        "model": model_info(path),
        "server_source": source_info(args.src),
        "settings": {
            "max_tokens": args.max_tokens,
            "runs": args.runs,
            "temperature": 0,
            "stop_bias": STOP_BIAS,
            "prefill_step_size": PREFILL_STEP_SIZE,
            "cpu_float32_max_gb": CPU_FLOAT32_MAX_GB,
            "order": "interleaved" if args.interleave else "sequential",
            "prompt_repeat": args.prompt_repeat,
            "prompt_tokens": len(plan.ids),
            "banned_stop_ids": plan.stop_ids,
            "messages": messages,
            "decode_tps": "(tokens - 1) / (t_last_token - t_first_token), same on every stage",
        },
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
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The single-stream stages: mlx-lm, the server's runner or paged engine, and the server.

Each loads its model in the constructor, generates the planned prompt greedily with every stop
id banned in `run_once` (so each run makes exactly `max_tokens` tokens) and frees it in
`close`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.lib import engine_build
from benchmarks.lib.engine_build import CPU_FLOAT32_MAX_GB, PREFILL_STEP_SIZE
from benchmarks.lib.machine import gpu_memory_of, process_env
from benchmarks.lib.prompts import PromptPlan, ban_bias, ban_processors
from benchmarks.lib.pyspy import profile_server
from benchmarks.lib.server import ServerProcess
from benchmarks.lib.sse import stream_chat
from benchmarks.lib.stages import RunResult, StageResult, run_from_stamps


class ReferenceSession:
    """mlx-lm in-process: `mlx_lm.load`, densified as the server does on CPU."""

    name = "reference"

    def __init__(self, path: Path, plan: PromptPlan, max_tokens: int) -> None:
        import mlx_lm

        from mlx_manager.models.cpu_precision import densify_for_cpu

        self.stage = StageResult(self.name)
        start = time.perf_counter()
        loaded = mlx_lm.load(str(path))
        self.model, self.tokenizer = loaded[0], loaded[1]
        self.stage.info["densified_float32"] = densify_for_cpu(self.model, CPU_FLOAT32_MAX_GB)
        self.stage.load_s = time.perf_counter() - start
        self.plan, self.max_tokens = plan, max_tokens
        self.processors = ban_processors(plan.stop_ids)

    def run_once(self) -> tuple[RunResult, list[int]]:
        import mlx_lm
        from mlx_lm.sample_utils import make_sampler

        stamps: list[float] = []
        ids: list[int] = []
        text: list[str] = []
        last: Any = None
        t0 = time.perf_counter()
        for response in mlx_lm.stream_generate(
            self.model,
            self.tokenizer,
            self.plan.ids,
            max_tokens=self.max_tokens,
            sampler=make_sampler(temp=0.0),
            logits_processors=self.processors,
            prefill_step_size=PREFILL_STEP_SIZE,
        ):
            stamps.append(time.perf_counter())
            ids.append(int(response.token))
            text.append(response.text)
            last = response
        result = run_from_stamps(t0, stamps, text, len(self.plan.ids), last.finish_reason)
        result.prefill_tps = float(last.prompt_tps)
        result.generation_tps = float(last.generation_tps)
        return result, ids

    def close(self) -> None:
        del self.model, self.tokenizer, self.processors


class RunnerSession:
    """The server's runner and output builder in a plain loop: no HTTP, no engine thread."""

    name = "runner"

    def __init__(self, path: Path, plan: PromptPlan, max_tokens: int) -> None:
        self.stage = StageResult(self.name)
        start = time.perf_counter()
        self.loaded = engine_build.load_server_model(path, path.name)
        self.stage.load_s = time.perf_counter() - start
        self.plan, self.max_tokens = plan, max_tokens
        self.params = engine_build.greedy(max_tokens, tuple(plan.stop_ids))
        self.number = 0

    def run_once(self) -> tuple[RunResult, list[int]]:
        from mlx_manager.engine.output import OutputBuilder
        from mlx_manager.runner.generation import SequenceRunner

        self.number += 1
        loaded, plan = self.loaded, self.plan
        request = engine_build.request(f"r{self.number}", plan.ids, self.params, self.max_tokens)
        output = OutputBuilder(request, loaded.tokenizer, loaded.stop_token_ids)
        t0 = time.perf_counter()
        runner = SequenceRunner(
            loaded.model, plan.ids, self.params, self.max_tokens, PREFILL_STEP_SIZE
        )
        stamps: list[float] = []
        ids: list[int] = []
        text: list[str] = []
        reason = None
        while reason is None and (step := runner.next()) is not None:
            stamps.append(time.perf_counter())
            ids.append(step.token)
            event = output.add(step)
            if event is not None:
                text.append(event.text)
                reason = str(event.finish_reason) if event.finished else None
        runner.close()
        return run_from_stamps(t0, stamps, text, len(plan.ids), reason), ids

    def close(self) -> None:
        del self.loaded


class EngineSession:
    """The server's paged engine stepped in a plain loop: no HTTP, no engine thread."""

    name = "engine"

    def __init__(self, path: Path, plan: PromptPlan, max_tokens: int) -> None:
        self.stage = StageResult(self.name)
        start = time.perf_counter()
        self.loaded = engine_build.load_server_model(path, path.name)
        self.engine = engine_build.paged_engine(self.loaded)
        self.stage.load_s = time.perf_counter() - start
        self.stage.info["kv_cache"] = self.engine.describe()
        self.plan, self.max_tokens = plan, max_tokens
        self.params = engine_build.greedy(max_tokens, tuple(plan.stop_ids))
        self.number = 0

    def run_once(self) -> tuple[RunResult, list[int]]:
        self.number += 1
        plan = self.plan
        t0 = time.perf_counter()
        self.engine.add(
            engine_build.request(f"e{self.number}", plan.ids, self.params, self.max_tokens)
        )
        stamps: list[float] = []
        ids: list[int] = []
        text: list[str] = []
        reason = None
        for now, event in engine_build.drain(self.engine):
            stamps += [now] * len(event.token_ids)
            ids += event.token_ids
            text.append(event.text)
            if event.finished:
                reason = str(event.finish_reason)
        return run_from_stamps(t0, stamps, text, len(plan.ids), reason), ids

    def close(self) -> None:
        del self.engine, self.loaded


@dataclass(frozen=True, slots=True)
class ServerOptions:
    src: Path  # where the server imports mlx_manager from
    log_path: Path
    extra_args: tuple[str, ...] = ()  # further `serve` flags
    plain: bool = False  # `-m mlx_manager.cli` directly (no device line in the log)
    start_timeout: float = 600.0
    request_timeout: float = 600.0
    profile_s: int = 0  # py-spy the server for this long after the timed runs


class ServerSession:
    """`mlx_manager.cli serve` as a child process, measured over streamed chat completions."""

    name = "server"

    def __init__(
        self,
        path: Path,
        messages: list[dict[str, str]],
        plan: PromptPlan,
        max_tokens: int,
        options: ServerOptions,
    ) -> None:
        self.stage = StageResult(self.name)
        self.options = options
        self.stack = contextlib.ExitStack()
        start = time.perf_counter()
        extra = ["--log-level", "warning", *options.extra_args]
        server = ServerProcess.manager(
            path, options.log_path, extra, options.src, not options.plain
        )
        try:
            self.server = self.stack.enter_context(server)
            self.client = self.stack.enter_context(
                httpx.Client(base_url=server.base, timeout=options.request_timeout)
            )
            model_id = server.wait_health(options.start_timeout)[0]
        except BaseException:
            self.stack.close()
            raise
        self.stage.load_s = time.perf_counter() - start
        self.stage.info["pid"] = server.pid
        self.stage.info["device"] = server.logged_device()
        self.stage.info["ld_preload"] = process_env(server.pid).get("LD_PRELOAD", "")
        self.payload = {
            "model": model_id,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logit_bias": ban_bias(plan.stop_ids),
        }

    def run_once(self) -> tuple[RunResult, None]:
        return server_run(self.client, self.payload), None

    def close(self) -> None:
        try:
            self.stage.info["gpu_memory_mib"] = gpu_memory_of(self.server.pid)
            if self.options.profile_s > 0:
                self.stage.info["profile"] = profile_server(
                    lambda: server_run(self.client, self.payload).decode_tps,
                    self.server.pid,
                    self.options.profile_s,
                    self.options.log_path,
                )
        finally:
            self.stack.close()


def server_run(client: httpx.Client, payload: dict[str, Any]) -> RunResult:
    """One streamed chat completion as a run: times are SSE chunk arrivals at the client."""
    timing = stream_chat(client, payload)
    assert timing.first is not None
    tokens = int(timing.usage["completion_tokens"])
    end = timing.finish_at or timing.last or timing.first
    first = timing.first
    return RunResult(
        tokens=tokens,
        decode_tps=(tokens - 1) / (end - first) if end > first else float("nan"),
        ttft_s=first - timing.sent,
        total_s=end - timing.sent,
        prefill_tps=int(timing.usage["prompt_tokens"]) / (first - timing.sent),
        chunks=timing.chunks,
        finish_reason=timing.finish_reason,
        text_head="".join(timing.text)[:80],
    )

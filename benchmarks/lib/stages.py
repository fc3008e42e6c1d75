"""Stages of a single-stream comparison: timed runs, warm-ups, sequential or interleaved order.

A stage is a session (`Session`: a name, a `StageResult` and `run_once`) that generates the
same prompt once per call: mlx-lm in-process, the server's engine in-process, or the server
over HTTP (`sessions.py`). Decode tok/s is (tokens - 1) / (time of the last token - time of
the first token) on every stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from benchmarks.lib.engine_build import free_mlx
from benchmarks.lib.output import logger
from benchmarks.lib.stats import decode_rate, median_or_none

log = logger("single_stream")
MEDIAN_KEYS = ("decode_tps", "ttft_s", "prefill_tps", "generation_tps", "total_s")


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


def run_from_stamps(
    t0: float, stamps: list[float], text: list[str], prompt_tokens: int, reason: str | None
) -> RunResult:
    """A run from the perf_counter time of each generated token (`t0`: the request)."""
    return RunResult(
        tokens=len(stamps),
        decode_tps=decode_rate(len(stamps), stamps),
        ttft_s=stamps[0] - t0,
        total_s=stamps[-1] - t0,
        prefill_tps=prompt_tokens / (stamps[0] - t0),
        finish_reason=reason,
        text_head="".join(text)[:80],
    )


@dataclass(slots=True)
class StageResult:
    name: str
    runs: list[RunResult] = field(default_factory=list)
    load_s: float | None = None
    token_ids: list[int] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def median(self, key: str) -> float | None:
        return median_or_none(getattr(r, key) for r in self.runs)

    def to_json(self) -> dict[str, Any]:
        medians = {k: self.median(k) for k in MEDIAN_KEYS}
        return {
            "runs": [asdict(r) for r in self.runs],
            "median": {k: v for k, v in medians.items() if v is not None},
            "load_s": self.load_s,
            **self.info,
        }


class Session(Protocol):
    name: str
    stage: StageResult

    def run_once(self) -> tuple[RunResult, list[int] | None]: ...

    def close(self) -> None: ...


def record(session: Session, round_number: int | None = None) -> RunResult:
    """One timed run, booked on the session's stage (with its token ids, if it has them)."""
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

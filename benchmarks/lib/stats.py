"""Percentiles, medians, rates and small timers."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(top: float | None, bottom: float | None) -> float | None:
    """top / bottom, or None when either is missing or zero."""
    return top / bottom if top and bottom else None


def decode_rate(tokens: int, stamps: list[float]) -> float:
    """(tokens - 1) / (last - first): the decode rate, prefill and first token left out."""
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    return (tokens - 1) / span if span > 0 else float("nan")


def ms_summary(seconds: list[float]) -> dict[str, float]:
    """Median, p90 (nearest lower rank) and minimum of `seconds`, in ms, rounded to 1 µs."""
    values = sorted(s * 1000 for s in seconds)
    return {
        "median_ms": round(statistics.median(values), 3),
        "p90_ms": round(values[int(0.9 * (len(values) - 1))], 3),
        "min_ms": round(values[0], 3),
    }


def latency_summary_ms(seconds: list[float]) -> dict[str, float | int | None]:
    """n, p50 / p90 / p99 (interpolated), mean, min and max of `seconds`, in ms."""
    values = [s * 1000 for s in seconds]
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "mean_ms": statistics.fmean(values) if values else None,
        "min_ms": min(values, default=None),
        "max_ms": max(values, default=None),
    }


def median_text(values: list[float]) -> str:
    """`median (v1, v2, ...)` with two decimals."""
    return f"{statistics.median(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})"


def timed_runs(fn: Callable[[], Any], runs: int) -> list[float]:
    """Seconds of each of `runs` calls of `fn`, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def elapsed_ms(start: float) -> float:
    """Milliseconds since `start` (a `time.perf_counter()` value)."""
    return (time.perf_counter() - start) * 1000


class Stopwatch:
    """Accumulates the time spent inside the calls it wraps."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


class Budget:
    """A whole run's deadline; each part takes min(its budget, what is left - reserve)."""

    def __init__(self, total_s: float) -> None:
        self.start = time.monotonic()
        self.total_s = total_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def budget(self, wanted: float, reserve: float = 0.0) -> float:
        return max(0.0, min(wanted, self.left() - reserve))

"""py-spy on a running server: where each of its threads spends its time."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def profile_server(
    run_request: Callable[[], float], pid: int, seconds: int, log_path: Path
) -> dict[str, Any]:
    """Record `pid` with py-spy for `seconds` while `run_request` runs again and again (each
    returning its decode tok/s); the summary of `summarize_pyspy`, the raw stacks next to
    `log_path`."""
    spy = shutil.which("py-spy")
    if spy is None:
        return {"error": "py-spy not on PATH"}
    raw = log_path.with_suffix(".pyspy.txt")
    command = [spy, "record", "--pid", str(pid), "--duration", str(seconds)]
    command += ["--rate", "250", "--threads", "--idle", "--nonblocking", "--format", "raw"]
    command += ["--output", str(raw)]
    spy_proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    rates: list[float] = []
    deadline = time.monotonic() + seconds - 1.5
    while time.monotonic() < deadline:
        rates.append(run_request())
    _, err = spy_proc.communicate(timeout=seconds + 60)
    if spy_proc.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed: {err.decode(errors='replace')[-500:]}"}
    summary = summarize_pyspy(raw.read_text(errors="replace"))
    summary["raw_file"] = raw.name
    summary["decode_tps_while_profiled"] = rates
    return summary


def collapse(raw: str) -> dict[str, dict[str, dict[str, int]]]:
    """Collapsed py-spy stacks -> per thread: total samples, leaf lines, inclusive functions.

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
    return threads


def summarize_pyspy(raw: str, top: int = 15) -> dict[str, Any]:
    """Per thread: samples, the `top` leaf lines and the `top` inclusive functions."""

    def ranked(counts: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(counts.items(), key=lambda kv: -kv[1])[:top]

    return {
        "threads": {
            thread: {
                "samples": entry["total"]["samples"],
                "top_leaf_lines": ranked(entry["leaf"]),
                "top_inclusive_functions": ranked(entry["inclusive"]),
            }
            for thread, entry in collapse(raw).items()
        }
    }

"""py-spy on a running server: where each of its threads spends its time."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def find_pyspy() -> str | None:
    """py-spy on PATH, or next to this interpreter (a virtual environment's bin/)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def profile_server(
    run_request: Callable[[], float],
    pid: int,
    seconds: int,
    log_path: Path,
    values_key: str = "decode_tps_while_profiled",
    idle: bool = True,
) -> dict[str, Any]:
    """Record `pid` with py-spy for `seconds` while `run_request` runs again and again (each
    returning a figure: its decode tok/s, say, kept under `values_key`); the summary of
    `summarize_pyspy`, the raw stacks next to `log_path`. `idle=False` keeps only the samples
    where a thread was running (where its CPU time goes, not where it waits)."""
    spy = find_pyspy()
    if spy is None:
        return {"error": "py-spy not on PATH nor beside the interpreter"}
    raw = log_path.with_suffix(".pyspy.txt")
    command = [spy, "record", "--pid", str(pid), "--duration", str(seconds)]
    command += ["--rate", "250", "--threads", *(["--idle"] if idle else [])]
    command += ["--nonblocking", "--format", "raw"]
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
    summary["idle_samples_included"] = idle
    summary[values_key] = rates
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


def package_of(frame: str) -> str:
    """`func (pkg/sub/file.py:12)` -> `pkg` (`mlx_manager/sub` for our own code; the file for
    the standard library's top-level modules, `<frozen ...>` as it is)."""
    found = re.search(r"\(([^()]*?)(?::\d+)?\)$", frame)
    path = found.group(1) if found else frame
    parts = path.split("/")
    if parts[0] == "mlx_manager" and len(parts) > 2:
        return "/".join(parts[:2])
    if len(parts) == 1:
        return path.removesuffix(".py")
    return parts[0]


def self_time_by_package(raw: str) -> dict[str, list[tuple[str, int]]]:
    """Per thread: samples by the package of the innermost Python frame (where the thread
    was running: its own code, or a C call made from it), most first."""
    threads: dict[str, dict[str, int]] = {}
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        package = package_of(frames[-1]) if len(frames) > 1 else "(no Python frame)"
        counts = threads.setdefault(frames[0], {})
        counts[package] = counts.get(package, 0) + int(count_text)
    return {t: sorted(c.items(), key=lambda kv: -kv[1]) for t, c in threads.items()}


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

"""What a result was measured on: the machine, MLX, the GPU, and which mlx_manager code ran."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any


def _nvidia_smi(query: str, csv_format: str) -> str | None:
    """nvidia-smi's CSV answer to `query`, or None without an NVIDIA GPU."""
    try:
        return subprocess.run(
            ["nvidia-smi", query, f"--format={csv_format}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_name() -> str | None:
    """`name, memory MiB, driver` of the GPUs, or None."""
    out = _nvidia_smi("--query-gpu=name,memory.total,driver_version", "csv,noheader")
    return out.strip() if out and out.strip() else None


def gpu_memory_of(pid: int) -> int | None:
    """MiB of GPU memory held by `pid` per nvidia-smi (None without an NVIDIA GPU)."""
    out = _nvidia_smi("--query-compute-apps=pid,used_memory", "csv,noheader,nounits")
    if out is None:
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
            return int(parts[1])
    return 0


def mlx_info() -> dict[str, Any]:
    """MLX and mlx-lm versions and the device MLX computes on in this process."""
    import mlx.core as mx
    import mlx_lm

    return {
        "mlx": getattr(mx, "__version__", "?"),
        "mlx_lm": mlx_lm.__version__,
        "default_device": str(mx.default_device()),
    }


def basic_info() -> dict[str, Any]:
    """Platform, Python and MLX: what every result file records."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        **mlx_info(),
    }


def machine_info() -> dict[str, Any]:
    """`basic_info` plus CPU, GPU, load average (now) and LD_PRELOAD."""
    return {
        **basic_info(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": gpu_name(),
        "load_average_1_5_15min_at_end": list(os.getloadavg()),
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
        "event_loop": event_loop(),
    }


def event_loop() -> str:
    """The loop uvicorn picks (`loop="auto"`) for servers started with this environment."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    return f"uvloop {uvloop.__version__}"


def process_env(pid: int) -> dict[str, str]:
    """The environment a (possibly re-exec'd) process runs with; empty where unreadable."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def _git(src: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(src), *args], capture_output=True, text=True, check=True
    ).stdout


def source_info(src: Path) -> dict[str, Any]:
    """Which mlx_manager code ran: a snapshot's COMMIT file, or the checkout's HEAD + dirt."""
    info: dict[str, Any] = {"src": str(src)}
    if (src / "COMMIT").is_file():
        info["commit"] = (src / "COMMIT").read_text().strip()
        info["snapshot"] = True
        return info
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["commit"] = _git(src, "rev-parse", "HEAD").strip()
        dirty = _git(src, "status", "--porcelain", "--", "mlx_manager")
        info["mlx_manager_dirty"] = bool(dirty.strip())
    return info


def process_memory_mib(pid: int) -> dict[str, float]:
    """Resident memory of `pid` now (VmRSS) and at its peak (VmHWM), in MiB; {} if unreadable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.MULTILINE))
    return {
        key: round(int(found[field]) / 1024, 1)
        for key, field in (("rss_mib", "VmRSS"), ("peak_rss_mib", "VmHWM"))
        if field in found
    }


def process_cpu_s(pid: int) -> dict[str, float] | None:
    """Seconds `pid`'s threads have run on a CPU and waited runnable in a run queue (summed
    over /proc/PID/task/*/schedstat; threads that ended are not counted). None if unreadable."""
    on_cpu = waiting = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            fields = (task / "schedstat").read_text().split()
        except OSError:
            continue  # a thread that ended meanwhile
        on_cpu += int(fields[0])
        waiting += int(fields[1])
    return {"cpu_s": on_cpu / 1e9, "runqueue_wait_s": waiting / 1e9}

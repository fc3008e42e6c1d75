"""Child processes: free ports, stopping a process group, a script run in a time box."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_group(proc: subprocess.Popen[Any], grace_s: float = 15.0) -> None:
    """SIGTERM, then SIGINT, then SIGKILL to the process group of a child we started (with
    `start_new_session=True`), each given time to work."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGINT, 5.0), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue


def stop_on_sigterm() -> None:
    """SIGTERM (a time box's `timeout`) unwinds like Ctrl-C, so a script's servers are stopped."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def run_child(
    command: list[str], timeout: float, log_path: Path, cwd: Path, log: Callable[[str], None]
) -> int:
    """Run a benchmark script; its stdout+stderr go to our stderr and to `log_path`; its
    process group is stopped at `timeout`. Returns its exit code (-9 if it never ended)."""
    log(f"$ {shlex.join(command)}  (time box {timeout:.0f}s)")
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            cwd=cwd,
        )
        reader = threading.Thread(target=_copy_lines, args=(proc, out), daemon=True)
        reader.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"time box of {timeout:.0f}s reached: stopping pid {proc.pid}")
            stop_group(proc)
        reader.join(10)
        sys.stderr.flush()
    return proc.returncode if proc.returncode is not None else -9


def _copy_lines(proc: subprocess.Popen[str], out: Any) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stderr.write(line)
        out.write(line)

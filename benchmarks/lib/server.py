"""A server under test as a child process: MLX Manager, mlx_lm.server or LiteLLM's proxy on a
free port.

The child runs in its own process group (stopped as a group), logs to a file, and is ready
once /health answers (MLX Manager), a 1-token completion succeeds (any OpenAI server: the
model is loaded) or a given path answers 200 (`wait_http`: LiteLLM's /health/liveliness).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.lib.environment import BENCHMARKS, REPO, server_env
from benchmarks.lib.output import logger
from benchmarks.lib.processes import free_port, stop_group

log = logger("server")


def manager_command(
    model: str | Path | None, port: int, extra: list[str], log_device: bool = False
) -> list[str]:
    """`python -m mlx_manager.cli serve --model DIR --port P [extra]` (no `--model` when
    `model` is None: a router, say, with `--model-dir EMPTY` in `extra`); with `log_device`
    through serve_logging_device.py, whose first log line names the MLX device it uses."""
    if log_device:
        launcher = [str(BENCHMARKS / "serve_logging_device.py")]
    else:
        launcher = ["-m", "mlx_manager.cli"]
    models = [] if model is None else ["--model", str(model)]
    return [sys.executable, *launcher, "serve", *models, "--port", str(port), *extra]


def litellm_command(litellm_bin: Path, config: Path, port: int) -> list[str]:
    """LiteLLM's proxy (`litellm`, from its own virtual environment) on 127.0.0.1:`port`, one
    worker, no telemetry."""
    return [
        str(litellm_bin),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
        "--telemetry",
        "False",
    ]


def mlx_lm_command(model: Path, port: int, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlx_lm.server",
        "--model",
        str(model),
        "--port",
        str(port),
        *extra,
    ]


class ServerProcess:
    """A server child process; a context manager that stops it (and its group) on exit.

    `cwd` is where it runs: `python -m mlx_manager.cli` imports mlx_manager from there first
    (a `git archive` snapshot, say); `src` also puts that directory on its PYTHONPATH. `env`,
    when given, is the child's whole environment instead (a program of another virtual
    environment, which must not see ours).
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        log_path: Path,
        cwd: Path = REPO,
        src: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.command, self.port, self.log_path = name, command, port, log_path
        self.cwd = cwd
        self.env = env if env is not None else server_env(src) if src is not None else None
        self.proc: subprocess.Popen[Any] | None = None
        self.data_dir: Path | None = None  # removed at exit
        self.ready_s: float | None = None
        self._started = time.monotonic()

    @classmethod
    def manager(
        cls,
        model: str | Path | None,
        log_path: Path,
        extra: list[str],
        src: Path = REPO,
        log_device: bool = False,
    ) -> ServerProcess:
        """MLX Manager serving `model` (a directory, or a `--model` spec such as `a=DIR`; None:
        no `--model` flag) on a free port, importing mlx_manager from `src`, with a data
        directory of its own (removed at exit): servers started together would otherwise
        share ~/.local/share/mlx-manager, race on its migrations, and leave it behind."""
        port = free_port()
        command = manager_command(model, port, extra, log_device)
        env = server_env(src)
        data_dir = Path(tempfile.mkdtemp(prefix="mlx-manager-bench-data-"))
        env["MLX_MANAGER_DATA_DIR"] = str(data_dir)
        server = cls("mlx_manager", command, port, log_path, cwd=src, env=env)
        server.data_dir = data_dir
        return server

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> ServerProcess:
        log(f"starting {self.name}: {shlex.join(self.command)} (log {self.log_path})")
        self._log = self.log_path.open("wb")
        self._started = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.cwd,
            env=self.env,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            log(f"stopping {self.name} (pid {self.proc.pid})")
            stop_group(self.proc)
        self._log.close()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def logged_device(self) -> str | None:
        """The MLX device serve_logging_device.py logged for the server process."""
        found = re.search(r"default_device=(.+)", self.log_path.read_text(errors="replace"))
        return found.group(1).strip() if found else None

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def wait_health(self, timeout: float) -> list[str]:
        """Poll MLX Manager's /health until 200; returns the served model ids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                response = httpx.get(self.base + "/health", timeout=2.0)
                if response.status_code == 200:
                    self.ready_s = time.monotonic() - self._started
                    models: list[str] = response.json()["models"]
                    return models
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s")

    def wait_http(self, path: str, timeout: float) -> None:
        """Poll GET `path` until it answers 200 (any server with a liveness route)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if httpx.get(self.base + path, timeout=2.0).status_code == 200:
                    self.ready_s = time.monotonic() - self._started
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def wait_completion(self, timeout: float, model: str | None) -> str | None:
        """Until a 1-token completion succeeds (any OpenAI server, the model loaded).

        Returns the model id to send (`model`, or the first of /v1/models), None if not ready.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._check_alive()
            except RuntimeError:
                log(f"{self.name} exited; see {self.log_path}")
                return None
            try:
                model = model or self._first_model()
                if model is not None and self._probe(model):
                    self.ready_s = time.monotonic() - self._started
                    log(f"{self.name} ready after {self.ready_s:.1f}s")
                    return model
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        log(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}")
        return None

    def _first_model(self) -> str | None:
        response = httpx.get(self.base + "/v1/models", timeout=10)
        data = response.json().get("data") if response.status_code == 200 else None
        return str(data[0]["id"]) if data else None

    def _probe(self, model: str) -> bool:
        body = {"model": model, "prompt": "Hello", "max_tokens": 1, "stream": False}
        response = httpx.post(self.base + "/v1/completions", json=body, timeout=120)
        if response.status_code != 200:
            log(f"{self.name} probe: {response.status_code} {response.text[:200]}")
        return response.status_code == 200

"""Where the code under test comes from, and the process environment it runs in."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
SRC_ENV = "BENCH_MLX_MANAGER_SRC"  # where a server started by a benchmark imports mlx_manager
OPENBLAS = Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0")


def has_package(src: Path) -> bool:
    return (src / "mlx_manager" / "__init__.py").is_file()


def use_source(src: Path) -> None:
    """Import `mlx_manager` from `src` from now on (before any import of it)."""
    loaded = sys.modules.get("mlx_manager")
    if loaded is not None and Path(str(loaded.__file__)).resolve().parents[1] != src.resolve():
        raise RuntimeError(f"mlx_manager was already imported from {loaded.__file__}")
    sys.path.insert(0, str(src))


def server_env(src: Path) -> dict[str, str]:
    """The environment of a server child process that must import mlx_manager from `src`."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env[SRC_ENV] = str(src)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    return env


def maybe_reexec_with_openblas() -> None:
    """Run under the environment the server gives itself.

    `mlx_manager.cli serve` re-executes itself with OpenBLAS preloaded on Linux whenever the
    library exists (it makes MLX's CPU matmuls ~10x faster). In-process stages compared with
    the server must run under the same LD_PRELOAD, on CPU and GPU alike.
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

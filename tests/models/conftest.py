"""Session-wide conversions of the embedded SmolLM2 GGUF, shared by the model tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlx_manager.models.default_model import (
    embedded_gguf_path,
    embedded_model_dir,
    ensure_embedded_model,
)
from mlx_manager.models.gguf_convert import convert_gguf


@dataclass
class Conversion:
    path: Path
    progress: list[tuple[int, int]] = field(default_factory=list)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The real cache's conversion: converted once per machine, shared with the server."""
    return ensure_embedded_model()


@pytest.fixture(scope="session")
def fresh_conversion(tmp_path_factory: pytest.TempPathFactory) -> Conversion:
    """One float32 conversion into a temporary cache, laid out as ensure_embedded_model would."""
    out = embedded_model_dir(tmp_path_factory.mktemp("cache"), "float32")
    conversion = Conversion(out)
    convert_gguf(
        embedded_gguf_path(),
        out,
        scale_dtype="float32",
        progress=lambda done, total: conversion.progress.append((done, total)),
    )
    return conversion

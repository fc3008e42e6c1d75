"""EngineCore.remove_model: refuses while busy, finishes a pipelined step, frees MLX memory."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from mlx_manager.config import load_settings
from mlx_manager.engine.core import EngineCore
from mlx_manager.engine.request import EngineRequest
from mlx_manager.models.loaded import load_text_model
from mlx_manager.models.sources import ModelSpec
from mlx_manager.types import GenerationEvent, SamplingParams


def test_remove_model(tiny_model_dirs: dict[str, Path]) -> None:
    events: list[GenerationEvent] = []
    core = EngineCore(load_settings({"kv_cache_gb": 0.002}).engine(), events.append)
    mx.clear_cache()
    before = mx.get_active_memory()
    path = tiny_model_dirs["llama"]
    core.add_model(load_text_model(ModelSpec("tiny", str(path)), path, None, 2.0))
    assert (core.kv_bytes("tiny") or 0) > 0 and mx.get_active_memory() > before
    core.add_request(EngineRequest("r1", "tiny", (1, 2, 3), SamplingParams(temperature=0), 4))
    core.step()
    assert core.remove_model("tiny") is core.models["tiny"]  # refused: r1 is running
    while not any(e.finished for e in events):
        core.step()
    # A stop string on the first token ends r2 while the step after it is already launched.
    first = "".join(e.text for e in events)[:2]
    events.clear()
    sampling = SamplingParams(temperature=0, stop=(first,))
    core.add_request(EngineRequest("r2", "tiny", (1, 2, 3), sampling, 40))
    while not any(e.finished for e in events):
        core.step()
    assert core.has_work()  # only the surplus step: nothing runs or waits
    assert core.remove_model("tiny") is None
    assert core.models == {} and not core.has_work()
    assert mx.get_active_memory() <= before
    assert core.remove_model("tiny") is None  # absent: nothing to do

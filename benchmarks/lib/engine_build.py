"""The server's paged engine built in-process from a model directory, without HTTP or threads.

`load_server_model` loads a model exactly as the server does (`load_text_model`: mlx-lm's
load, densified to float32 on MLX's CPU backend up to 2 GB); `paged_engine` puts
`PagedModelEngine` with the server's default engine settings (or the given overrides, as the
server's flags would) over it. `mlx_manager` is imported inside the functions, so a script can
still choose where it comes from (`environment.use_source`) after importing this module.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.lib.prompts import BAN_BIAS

if TYPE_CHECKING:
    from mlx_manager.engine.paged_engine import PagedModelEngine
    from mlx_manager.engine.request import EngineRequest
    from mlx_manager.models.loaded import LoadedModel
    from mlx_manager.types import GenerationEvent, SamplingParams

CPU_FLOAT32_MAX_GB = 2.0  # the server's default --cpu-float32-max-gb
PREFILL_STEP_SIZE = 2048  # the server's default --prefill-step-size (and mlx-lm's)


def free_mlx() -> None:
    """Drop unreferenced arrays and MLX's buffer cache (between stages and models)."""
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()


def load_server_model(
    path: Path, model_id: str = "m", cpu_float32_max_gb: float = CPU_FLOAT32_MAX_GB
) -> LoadedModel:
    """The model as the server loads it (`load_text_model`, densified on CPU)."""
    from mlx_manager.models.loaded import load_text_model
    from mlx_manager.models.sources import ModelSpec

    return load_text_model(ModelSpec(model_id, str(path)), path, None, cpu_float32_max_gb)


def paged_engine(loaded: LoadedModel, **settings: Any) -> PagedModelEngine:
    """`PagedModelEngine` over `loaded` with the server's settings (defaults + `settings`,
    named as the server's flags: `kv_cache_gb=4`). SystemExit if the model is not paged."""
    from mlx_manager.config import load_settings
    from mlx_manager.engine.paged_engine import PagedModelEngine
    from mlx_manager.kv.paged_storage import probe_kv_layout

    layout = probe_kv_layout(loaded.model)
    if layout is None:
        raise SystemExit(f"{loaded.path}: not a model the paged KV cache covers")
    return PagedModelEngine(loaded, layout, load_settings(settings).engine())


def greedy(max_tokens: int | None = None, banned: tuple[int, ...] = ()) -> SamplingParams:
    """Greedy sampling; `banned` ids get logit bias -100 (as the HTTP stages ask for it)."""
    from mlx_manager.types import SamplingParams

    bias = tuple((i, BAN_BIAS) for i in banned)
    if max_tokens is None:
        return SamplingParams(temperature=0.0, logit_bias=bias)
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, logit_bias=bias)


def request(
    request_id: str, ids: list[int] | tuple[int, ...], params: SamplingParams, max_tokens: int
) -> EngineRequest:
    """An engine request for model "m" (the id `load_server_model` gives by default)."""
    from mlx_manager.engine.request import EngineRequest

    return EngineRequest(request_id, "m", tuple(ids), params, max_tokens)


def drain(engine: PagedModelEngine) -> Iterator[tuple[float, GenerationEvent]]:
    """Step `engine` until it has no work: each event with the perf_counter time of its step."""
    while engine.has_work():
        events = engine.step()
        now = time.perf_counter()
        for event in events:
            yield now, event


def first_token_s(engine: PagedModelEngine, engine_request: EngineRequest) -> float:
    """Seconds from `add` to the first event carrying a token; the request then runs out."""
    start = time.perf_counter()
    engine.add(engine_request)
    first: float | None = None
    for now, event in drain(engine):
        if first is None and event.token_ids:
            first = now - start
    assert first is not None, "no token"
    return first

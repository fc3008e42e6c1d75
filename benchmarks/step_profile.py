"""cProfile of the paged engine's batch-1 decode steps, in-process: where host time goes.

python benchmarks/step_profile.py --model DIR [--steps 200]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

from mlx_manager.config import load_settings
from mlx_manager.engine.paged_engine import PagedModelEngine
from mlx_manager.engine.request import EngineRequest
from mlx_manager.kv.paged_storage import probe_kv_layout
from mlx_manager.models.loaded import load_text_model
from mlx_manager.models.sources import ModelSpec
from mlx_manager.types import SamplingParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--kv-gb", type=float, default=1.0)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    path = Path(args.model)
    model = load_text_model(ModelSpec("m", str(path)), path, None, 2.0)
    layout = probe_kv_layout(model.model)
    assert layout is not None
    engine = PagedModelEngine(model, layout, load_settings({"kv_cache_gb": args.kv_gb}).engine())
    greedy = SamplingParams(temperature=0.0)
    engine.add(EngineRequest("warm", "m", tuple(range(100, 154)), greedy, 64))
    while engine.has_work():
        engine.step()
    engine.add(EngineRequest("r", "m", tuple(range(200, 254)), greedy, args.steps + 2))
    engine.step()
    engine.step()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    if not args.no_profile:
        profiler.enable()
    for _ in range(args.steps):
        engine.step()
    profiler.disable()
    elapsed = time.perf_counter() - start
    print(f"{1000 * elapsed / args.steps:.2f} ms/step (profiled)")
    if not args.no_profile:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()

"""Engine and pool gauges come from the published snapshot and pool status at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from mlx_manager.engine.core import EngineSnapshot
from mlx_manager.observability.registry import Metrics
from mlx_manager.pool.resident import ModelStatus, PoolStatus

SNAPSHOT = EngineSnapshot(
    running=3,
    waiting=2,
    finished_requests=10,
    aborted_requests=1,
    generated_tokens=400,
    tokens_per_second=50.0,
    kv_block_size=32,
    kv_blocks_total=100,
    kv_blocks_used=25,
    kv_blocks_free=75,
    kv_bytes_used=1000,
    prefix_hit_rate=0.5,
)


def model(name: str) -> ModelStatus:
    fields = {f: 0 for f in ModelStatus.__dataclass_fields__}
    fields.update(id=name, type="text", state="ready", pinned=False, keep_alive_s=None)
    fields.update(total_bytes=123, load_seconds=1.5)
    return ModelStatus(**fields)  # type: ignore[arg-type]


POOL = PoolStatus(None, 10**9, 123, 2, 4, 1, 0, (model("m1"),))


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = Metrics(lambda: SNAPSHOT, lambda: POOL).exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_engine_and_pool_state_at_scrape_time() -> None:
    got = samples()
    assert got[("mlx_manager:num_requests_running", ())] == 3
    assert got[("mlx_manager:num_requests_waiting", ())] == 2
    assert got[("mlx_manager:kv_cache_usage_perc", ())] == 0.25
    assert got[("mlx_manager:prefix_cache_hit_rate", ())] == 0.5
    assert got[("mlx_manager:engine_generated_tokens_total", ())] == 400
    assert got[("mlx_manager:pool_resident_models", ())] == 1
    assert got[("mlx_manager:pool_max_bytes", ())] == 10**9
    assert got[("mlx_manager:pool_loads_total", ())] == 4
    assert got[("mlx_manager:pool_model_bytes", (("model_name", "m1"),))] == 123
    assert got[("mlx_manager:pool_model_load_seconds", (("model_name", "m1"),))] == 1.5

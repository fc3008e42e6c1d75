"""Engine and pool gauges, read from their published state at scrape time.

The engine thread publishes a snapshot (running, waiting, KV blocks, prefix hits); the pool's
status is plain data on the event loop. A scrape reads both: nothing is counted per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mlx_manager.engine.core import EngineSnapshot
from mlx_manager.observability.request_metrics import PREFIX
from mlx_manager.pool.resident import PoolStatus


class EngineCollector(Collector):
    def __init__(
        self, snapshot: Callable[[], EngineSnapshot], pool: Callable[[], PoolStatus]
    ) -> None:
        self._snapshot = snapshot
        self._pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        engine = self._snapshot()
        yield _gauge("num_requests_running", "Requests in the running batch.", engine.running)
        yield _gauge("num_requests_waiting", "Requests queued for the batch.", engine.waiting)
        usage = engine.kv_blocks_used / engine.kv_blocks_total if engine.kv_blocks_total else 0.0
        yield _gauge("kv_cache_usage_perc", "Fraction of KV cache blocks in use (0-1).", usage)
        yield _gauge("kv_cache_bytes_used", "Bytes of KV cache in use.", engine.kv_bytes_used)
        yield _gauge(
            "prefix_cache_hit_rate",
            "Prompt tokens served from the prefix cache over those looked up.",
            engine.prefix_hit_rate,
        )
        yield _counter(
            "engine_generated_tokens", "Tokens the engine generated.", engine.generated_tokens
        )
        yield from self._pool_metrics(self._pool())

    def _pool_metrics(self, pool: PoolStatus) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        resident = [m for m in pool.models if m.state == "ready"]
        yield _gauge("pool_resident_models", "Models loaded and ready.", len(resident))
        yield _gauge("pool_used_bytes", "Bytes the pool accounts to its models.", pool.used_bytes)
        if pool.max_memory_bytes is not None:
            yield _gauge("pool_max_bytes", "The pool's memory budget.", pool.max_memory_bytes)
        yield _counter("pool_loads", "Model loads.", pool.loads)
        yield _counter("pool_evictions", "Models evicted to make room.", pool.evictions)
        yield _counter("pool_idle_unloads", "Models unloaded after idling.", pool.idle_unloads)
        size = GaugeMetricFamily(
            f"{PREFIX}pool_model_bytes", "Bytes of each resident model.", labels=["model_name"]
        )
        seconds = GaugeMetricFamily(
            f"{PREFIX}pool_model_load_seconds",
            "How long each resident model took to load.",
            labels=["model_name"],
        )
        for model in pool.models:
            size.add_metric([model.id], model.total_bytes)
            seconds.add_metric([model.id], model.load_seconds)
        yield size
        yield seconds


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}{name}", documentation, value=value)

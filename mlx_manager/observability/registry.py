"""The server's own metrics registry (not prometheus-client's process-global one, so two
servers in one process, as in tests, never share counters)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

from mlx_manager.engine.core import EngineSnapshot
from mlx_manager.observability.engine_collector import EngineCollector
from mlx_manager.observability.request_metrics import RequestMetrics
from mlx_manager.observability.route_metrics import (
    BackendCollector,
    RoutedService,
    fallbacks_counter,
)
from mlx_manager.pool.resident import PoolStatus


class Metrics:
    def __init__(
        self, snapshot: Callable[[], EngineSnapshot], pool: Callable[[], PoolStatus]
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestMetrics(self.registry)
        self.registry.register(EngineCollector(snapshot, pool))
        self.fallbacks = fallbacks_counter(self.registry)

    def watch_routing(self, service: RoutedService) -> None:
        """`backend_up` from the service's routing table and cooldowns, at scrape time."""
        self.registry.register(BackendCollector(service))

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric now."""
        return generate_latest(self.registry)

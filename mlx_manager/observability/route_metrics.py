"""Routing metrics: fallbacks by provider and failure class, and which backends are up.

`route_fallbacks_total{provider, reason}` counts each time a route's chain passed over a
target for a later one: `provider` is the failed target's provider, `reason` its failure
class (routing/failover.py FailureClass). `backend_up{provider}` is 1 unless one of the
provider's targets is cooling down after failures; it is read from the cooldowns at scrape
time, so nothing is added per request. Both are labelled by provider names only, which come
from the admin's configuration (plus `local`): never a model name from a request.
Requests per backend are `request_success_total{backend}` (request_metrics.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mlx_manager.config import LOCAL_PROVIDER
from mlx_manager.observability.request_metrics import PREFIX

if TYPE_CHECKING:
    from mlx_manager.routing.failover import Cooldowns
    from mlx_manager.routing.service import RoutingTable


class RoutedService(Protocol):
    """What the backend gauge reads from the generation service."""

    @property
    def table(self) -> RoutingTable: ...

    @property
    def cooldowns(self) -> Cooldowns: ...


def fallbacks_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        f"{PREFIX}route_fallbacks",
        "Route targets passed over for a later one, by the failed target's provider and "
        "failure class.",
        ("provider", "reason"),
        registry=registry,
    )


class BackendCollector(Collector):
    def __init__(self, service: RoutedService) -> None:
        self._service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        cooling = {key.split("/", 1)[0] for key in self._service.cooldowns.cooling_down()}
        up = GaugeMetricFamily(
            f"{PREFIX}backend_up",
            "1 unless one of the provider's route targets is cooling down after failures.",
            labels=["provider"],
        )
        for provider in (LOCAL_PROVIDER, *sorted(self._service.table.upstreams)):
            up.add_metric([provider], 0.0 if provider in cooling else 1.0)
        yield up

"""The generation seam built from its configuration: the service, and the live routing
configuration that fills its table (config-file providers and rules now, the database's
when the store is attached)."""

from __future__ import annotations

from mlx_manager.config import RoutingConfig
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.failover import Cooldowns
from mlx_manager.routing.live import LiveRouting
from mlx_manager.routing.pool_aware import PoolAware, ResidencySource
from mlx_manager.routing.providers.base import GenerationProvider
from mlx_manager.routing.route_audit import RouteAudit
from mlx_manager.routing.scopes import UsageGate
from mlx_manager.routing.service import GenerationService, StreamObserver
from mlx_manager.routing.telemetry import RoutingTelemetry


def build_generation(
    config: RoutingConfig,
    local: GenerationProvider,
    aliases: AliasTable,
    observe: StreamObserver | None = None,
    pool: ResidencySource | None = None,
    usage: UsageGate | None = None,
    telemetry: RoutingTelemetry | None = None,
    audit: RouteAudit | None = None,
) -> tuple[GenerationService, LiveRouting]:
    """The service and its live routing (which owns the upstream providers: closed at stop)."""
    service = GenerationService(
        local,
        aliases,
        cooldowns=Cooldowns(config.cooldown_failures, config.cooldown_s),
        observe=observe,
        pool_aware=PoolAware(pool),
        usage=usage,
        telemetry=telemetry,
        audit=audit,
    )
    return service, LiveRouting(service, config, aliases)

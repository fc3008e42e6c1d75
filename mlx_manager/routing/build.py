"""The generation seam built from its configuration: upstream providers, rules, cooldowns."""

from __future__ import annotations

from mlx_manager.config import ProviderSettings, RoutingConfig
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.failover import Cooldowns
from mlx_manager.routing.pool_aware import PoolAware, ResidencySource
from mlx_manager.routing.providers.anthropic import AnthropicProvider
from mlx_manager.routing.providers.base import GenerationProvider
from mlx_manager.routing.providers.openai_compatible import OpenAICompatibleProvider
from mlx_manager.routing.rules import RuleSet
from mlx_manager.routing.service import GenerationService, StreamObserver

UpstreamProvider = OpenAICompatibleProvider | AnthropicProvider


def upstream_provider(settings: ProviderSettings) -> UpstreamProvider:
    if settings.kind == "anthropic":
        return AnthropicProvider(settings)
    return OpenAICompatibleProvider(settings)  # openai, openai_compatible


def build_generation(
    config: RoutingConfig,
    local: GenerationProvider,
    aliases: AliasTable,
    observe: StreamObserver | None = None,
    pool: ResidencySource | None = None,
) -> tuple[GenerationService, list[UpstreamProvider]]:
    """The service and the upstream providers it owns (closed by the runtime at stop)."""
    upstreams = [upstream_provider(p) for p in config.providers]
    service = GenerationService(
        local,
        aliases,
        {p.name: p for p in upstreams},
        RuleSet.build(config.routes, aliases),
        Cooldowns(config.cooldown_failures, config.cooldown_s),
        observe,
        PoolAware(pool),
    )
    return service, upstreams

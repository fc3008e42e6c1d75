"""An upstream provider from its settings: the dialect picks the class."""

from __future__ import annotations

from mlx_manager.config import ProviderSettings
from mlx_manager.routing.providers.anthropic import AnthropicProvider
from mlx_manager.routing.providers.openai_compatible import OpenAICompatibleProvider

UpstreamProvider = OpenAICompatibleProvider | AnthropicProvider


def upstream_provider(settings: ProviderSettings, api_key: str | None = None) -> UpstreamProvider:
    """The provider for `settings`; its key is `api_key` (stored) else its env variable's."""
    if settings.kind == "anthropic":
        return AnthropicProvider(settings, api_key)
    return OpenAICompatibleProvider(settings, api_key)  # openai, openai_compatible

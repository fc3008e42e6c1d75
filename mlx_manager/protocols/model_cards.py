"""`/v1/models` in both dialects: OpenAI's model objects plus what the pool knows (type, size
on disk, loaded, pinned), or Anthropic's model list when the caller speaks Anthropic.

Aliases (`--model-alias NAME=MODEL_ID`) are listed as models of their own, after the served
ones: OpenAI cards add `alias_of` (the served id), Anthropic's `display_name` is the served id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlx_manager.protocols import anthropic_convert, openai_convert
from mlx_manager.types import ModelInfo


def model_card(name: str, info: ModelInfo, *, anthropic: bool = False) -> dict[str, Any]:
    """One model under the name the client asked for (an alias stays an alias)."""
    if anthropic:
        return _anthropic_card(name, info)
    extra = {"alias_of": info.model_id} if name != info.model_id else {}
    return openai_convert.model_card(
        name,
        info.created,
        info.context_length,
        type=info.model_type,
        size_bytes=info.size_bytes,
        loaded=info.loaded,
        pinned=info.pinned,
        **extra,
    )


def model_list(
    infos: list[ModelInfo],
    *,
    anthropic: bool = False,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every served model, then each alias whose target is served (under its own name)."""
    named = [(i.model_id, i) for i in infos] + _aliased(infos, aliases or {})
    if anthropic:
        return anthropic_convert.model_list([_anthropic_card(n, i) for n, i in named])
    return {"object": "list", "data": [model_card(n, i) for n, i in named]}


def _aliased(infos: list[ModelInfo], aliases: Mapping[str, str]) -> list[tuple[str, ModelInfo]]:
    by_id = {info.model_id: info for info in infos}
    return [
        (name, by_id[target])
        for name, target in aliases.items()
        if target in by_id and name not in by_id
    ]


def _anthropic_card(name: str, info: ModelInfo) -> dict[str, Any]:
    card = anthropic_convert.model_info(name, info.created)
    card["display_name"] = info.model_id  # an alias shows the model that answers it
    return card

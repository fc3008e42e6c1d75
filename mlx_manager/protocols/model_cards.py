"""`/v1/models` in both dialects: OpenAI's model objects plus what the pool knows (type, size
on disk, loaded, pinned), or Anthropic's model list when the caller speaks Anthropic."""

from __future__ import annotations

from typing import Any

from mlx_manager.protocols import anthropic_convert, openai_convert
from mlx_manager.types import ModelInfo


def model_card(name: str, info: ModelInfo, *, anthropic: bool = False) -> dict[str, Any]:
    """One model under the name the client asked for (an alias stays an alias)."""
    if anthropic:
        return _anthropic_card(name, info)
    return openai_convert.model_card(
        name,
        info.created,
        info.context_length,
        type=info.model_type,
        size_bytes=info.size_bytes,
        loaded=info.loaded,
        pinned=info.pinned,
    )


def model_list(infos: list[ModelInfo], *, anthropic: bool = False) -> dict[str, Any]:
    if anthropic:
        return anthropic_convert.model_list([_anthropic_card(i.model_id, i) for i in infos])
    return {"object": "list", "data": [model_card(i.model_id, i) for i in infos]}


def _anthropic_card(name: str, info: ModelInfo) -> dict[str, Any]:
    return anthropic_convert.model_info(name, info.created)

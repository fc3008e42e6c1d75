"""What routes take from the app: the engine client and the model alias table."""

from __future__ import annotations

from fastapi import Request

from mlx_manager.engine.client import EngineClient
from mlx_manager.routing.aliases import AliasTable


def engine_of(request: Request) -> EngineClient:
    client: EngineClient = request.app.state.engine
    return client


def served_model(request: Request, name: str) -> str:
    """The served model a requested name means (aliases applied)."""
    aliases: AliasTable = getattr(request.app.state, "aliases", AliasTable())
    return aliases.resolve(name)

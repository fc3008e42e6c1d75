"""Providers and routing rules written through the admin API, as stored rows.

Bodies are validated by the config models (ProviderSettings, RouteSettings) on the way in and
again on the way out, so a stored row always means what a config file entry would. An API key
is stored only as AES-GCM ciphertext bound to its provider's name (security/secret_box); the
plaintext lives in memory, for the provider's client, and never leaves through the API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from mlx_manager.config import ProviderSettings, RouteSettings
from mlx_manager.security.secret_box import Keyring, last4
from mlx_manager.store.database import Database
from mlx_manager.store.tables import AdminChangeRow, ProviderRow, RouteRow, utc_now


@dataclass(frozen=True, slots=True)
class StoredProvider:
    settings: ProviderSettings
    api_key: str | None  # plaintext, in memory only
    api_key_hint: str | None  # "…abcd"
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredRoute:
    id: int
    settings: RouteSettings
    updated_at: datetime | None = None


def key_context(provider: str) -> str:
    """Associated data of a provider's key: its ciphertext cannot be moved to another row."""
    return f"provider:{provider}:api_key"


def _provider_options(settings: ProviderSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json", exclude={"name", "kind", "base_url"})


class RoutingRepository:
    def __init__(self, database: Database, keys: Callable[[], Keyring]) -> None:
        """`keys` gives the current keyring at each use: a rotation by the CLI while the
        server runs is seen by its next write."""
        self._db = database
        self._keys = keys

    async def load(self) -> tuple[list[StoredProvider], list[StoredRoute]]:
        keyring = self._keys()
        async with self._db.session() as session:
            providers = (await session.scalars(select(ProviderRow))).all()
            routes = (await session.scalars(select(RouteRow).order_by(RouteRow.id))).all()
            return [_provider(row, keyring) for row in providers], [_route(r) for r in routes]

    async def save_provider(
        self, provider: StoredProvider, actor: str, *, created: bool
    ) -> StoredProvider:
        """Insert or update; the provider as stored (its key's hint, its time)."""
        name = provider.settings.name
        ciphertext = (
            self._keys().encrypt(provider.api_key, key_context(name)) if provider.api_key else None
        )
        async with self._db.session() as session:
            row = await session.get(ProviderRow, name)
            if row is None:
                row = ProviderRow(name=name)
                session.add(row)
            row.kind = provider.settings.kind
            row.base_url = provider.settings.base_url
            row.options = _provider_options(provider.settings)
            row.api_key_ciphertext = ciphertext
            row.api_key_hint = last4(provider.api_key) if provider.api_key else None
            row.updated_at = utc_now()
            detail = {"kind": row.kind, "base_url": row.base_url, "api_key_set": bool(ciphertext)}
            action = "provider.create" if created else "provider.update"
            session.add(_change(actor, action, name, detail))
        return StoredProvider(provider.settings, provider.api_key, row.api_key_hint, row.updated_at)

    async def delete_provider(self, name: str, actor: str) -> bool:
        async with self._db.session() as session:
            result = await session.execute(delete(ProviderRow).where(ProviderRow.name == name))
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            session.add(_change(actor, "provider.delete", name, {}))
            return True

    async def add_route(self, settings: RouteSettings, actor: str) -> StoredRoute:
        async with self._db.session() as session:
            row = RouteRow(
                pattern=settings.pattern,
                match=settings.match,
                body=settings.model_dump(mode="json"),
            )
            session.add(row)
            await session.flush()  # assigns the id
            session.add(_change(actor, "route.create", str(row.id), row.body))
            return StoredRoute(row.id, settings, row.updated_at)

    async def replace_route(self, route_id: int, settings: RouteSettings, actor: str) -> bool:
        async with self._db.session() as session:
            row = await session.get(RouteRow, route_id)
            if row is None:
                return False
            row.pattern, row.match = settings.pattern, settings.match
            row.body = settings.model_dump(mode="json")
            row.updated_at = utc_now()
            session.add(_change(actor, "route.update", str(route_id), row.body))
            return True

    async def delete_route(self, route_id: int, actor: str) -> bool:
        async with self._db.session() as session:
            result = await session.execute(delete(RouteRow).where(RouteRow.id == route_id))
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            session.add(_change(actor, "route.delete", str(route_id), {}))
            return True

    async def rotate_keys(self) -> int:
        """Re-encrypt every stored key under the keyring's current master key; how many."""
        rotated = 0
        keyring = self._keys()
        async with self._db.session() as session:
            for row in (await session.scalars(select(ProviderRow))).all():
                token = row.api_key_ciphertext
                if token and keyring.needs_rotation(token):
                    row.api_key_ciphertext = keyring.rotate(token, key_context(row.name))
                    rotated += 1
            if rotated:
                session.add(_change("cli", "secrets.rotate", "providers", {"rotated": rotated}))
        return rotated


def _provider(row: ProviderRow, keyring: Keyring) -> StoredProvider:
    settings = ProviderSettings.model_validate(
        {**row.options, "name": row.name, "kind": row.kind, "base_url": row.base_url}
    )
    key = (
        keyring.decrypt(row.api_key_ciphertext, key_context(row.name))
        if row.api_key_ciphertext
        else None
    )
    return StoredProvider(settings, key, row.api_key_hint, row.updated_at)


def _route(row: RouteRow) -> StoredRoute:
    return StoredRoute(row.id, RouteSettings.model_validate(row.body), row.updated_at)


def _change(actor: str, action: str, target: str, detail: dict[str, Any]) -> AdminChangeRow:
    return AdminChangeRow(actor=actor, action=action, target=target, detail=detail)

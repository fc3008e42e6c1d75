"""Providers and routes in the store, on SQLite and on a real PostgreSQL server: migrations,
round trips, keys only as ciphertext bound to their row, the record of changes, rotation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, text

from mlx_manager.config import ProviderSettings, RouteSettings
from mlx_manager.security.secret_box import Keyring, MasterKey, SecretError
from mlx_manager.store import migrate
from mlx_manager.store.database import Database
from mlx_manager.store.routing_repo import RoutingRepository, StoredProvider
from mlx_manager.store.tables import AdminChangeRow, ProviderRow
from mlx_manager.store.urls import DatabaseUrls, database_urls

SECRET = "sk-live-abcdefghijklmnop1234"


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseUrls:
    if request.param == "sqlite":
        return database_urls(None, tmp_path / "data")
    return database_urls(request.getfixturevalue("postgres_url"), tmp_path)


async def _open(urls: DatabaseUrls) -> Database:
    return await Database.open(urls)


def _provider(name: str = "cloud", key: str | None = SECRET) -> StoredProvider:
    settings = ProviderSettings(name=name, kind="openai", base_url="https://api.example.com/v1")
    return StoredProvider(settings, key, None)


def _route(pattern: str = "gpt-", provider: str = "cloud") -> RouteSettings:
    return RouteSettings.model_validate(
        {"pattern": pattern, "match": "prefix", "targets": [{"provider": provider, "model": "m"}]}
    )


@pytest.fixture
def keyring() -> Keyring:
    return Keyring((MasterKey.generate(),))


def test_round_trip_keeps_the_key_as_ciphertext_only(urls: DatabaseUrls, keyring: Keyring) -> None:
    async def run() -> None:
        database = await _open(urls)
        try:
            repo = RoutingRepository(database, lambda: keyring)
            saved = await repo.save_provider(_provider(), "admin", created=True)
            assert saved.api_key_hint == "…" + SECRET[-4:]
            route = await repo.add_route(_route(), "admin")
            providers, routes = await repo.load()
            assert [p.settings for p in providers] == [saved.settings]
            assert providers[0].api_key == SECRET
            assert [(r.id, r.settings) for r in routes] == [(route.id, _route())]
            async with database.session() as session:
                row = await session.get(ProviderRow, "cloud")
                assert row is not None and row.api_key_ciphertext is not None
                assert row.api_key_ciphertext.startswith("mlxm1:")
                assert SECRET not in row.api_key_ciphertext
                # Bound to its row: moved to another provider's name, it does not decrypt.
                with pytest.raises(SecretError):
                    keyring.decrypt(row.api_key_ciphertext, "provider:other:api_key")
                actions = (await session.scalars(select(AdminChangeRow.action))).all()
            assert actions == ["provider.create", "route.create"]
        finally:
            await database.close()

    asyncio.run(run())


def test_replace_and_delete(urls: DatabaseUrls, keyring: Keyring) -> None:
    async def run() -> None:
        database = await _open(urls)
        try:
            repo = RoutingRepository(database, lambda: keyring)
            await repo.save_provider(_provider(), "a", created=True)
            await repo.save_provider(_provider(key=None), "a", created=False)
            route = await repo.add_route(_route(), "a")
            assert await repo.replace_route(route.id, _route("claude-"), "a")
            assert not await repo.replace_route(route.id + 100, _route(), "a")
            providers, routes = await repo.load()
            assert providers[0].api_key is None and providers[0].api_key_hint is None
            assert routes[0].settings.pattern == "claude-"
            assert await repo.delete_route(route.id, "a")
            assert not await repo.delete_route(route.id, "a")
            assert await repo.delete_provider("cloud", "a")
            assert await repo.load() == ([], [])
        finally:
            await database.close()

    asyncio.run(run())


def test_rotation_re_encrypts_under_the_new_key(urls: DatabaseUrls) -> None:
    old = Keyring((MasterKey.generate(),))
    new_key = MasterKey.generate()

    async def run() -> None:
        database = await _open(urls)
        try:
            await RoutingRepository(database, lambda: old).save_provider(
                _provider(), "a", created=True
            )
            both = Keyring((new_key, *old.keys))
            assert await RoutingRepository(database, lambda: both).rotate_keys() == 1
            assert await RoutingRepository(database, lambda: both).rotate_keys() == 0
            only_new = Keyring((new_key,))
            providers, _ = await RoutingRepository(database, lambda: only_new).load()
            assert providers[0].api_key == SECRET
        finally:
            await database.close()

    asyncio.run(run())


def test_upgrade_is_idempotent_and_reaches_head(urls: DatabaseUrls) -> None:
    assert migrate.upgrade(urls) == migrate.head_revision()
    assert migrate.upgrade(urls) == migrate.head_revision()

    async def run() -> None:
        database = await _open(urls)
        try:
            async with database.session() as session:
                version = (
                    await session.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar()
            assert version == migrate.head_revision()
        finally:
            await database.close()

    asyncio.run(run())


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    async def run() -> str:
        database = await _open(database_urls(None, tmp_path))
        try:
            async with database.session() as session:
                return str((await session.execute(text("PRAGMA journal_mode"))).scalar())
        finally:
            await database.close()

    assert asyncio.run(run()) == "wal"


def test_a_database_from_a_newer_version_is_named_not_migrated(tmp_path: Path) -> None:
    urls = database_urls(None, tmp_path)
    migrate.upgrade(urls)
    import sqlite3

    with sqlite3.connect(urls.sync_url.database or "") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(ValueError, match="newer than this MLX Manager knows"):
        migrate.upgrade(urls)

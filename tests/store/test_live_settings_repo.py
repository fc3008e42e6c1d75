"""Live settings in the store, on SQLite and a real PostgreSQL server: put, replace, read back
after reopening, delete, and each write recorded in admin_changes in the same transaction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from mlx_manager.store.database import Database
from mlx_manager.store.live_settings_repo import LiveSettingsRepository
from mlx_manager.store.tables import AdminChangeRow
from mlx_manager.store.urls import DatabaseUrls, database_urls


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseUrls:
    if request.param == "sqlite":
        return database_urls(None, tmp_path / "data")
    return database_urls(request.getfixturevalue("postgres_url"), tmp_path)


def test_round_trip_and_record(urls: DatabaseUrls) -> None:
    async def run() -> None:
        database = await Database.open(urls)
        repo = LiveSettingsRepository(database)
        assert await repo.get("pool.limits") is None
        await repo.put("pool.limits", {"max_models": 2}, "root", "pool.limits.update")
        stored = await repo.put(
            "pool.limits", {"max_models": 3, "keep_alive_s": 1.5}, "ann", "pool.limits.update"
        )
        assert stored.value == {"max_models": 3, "keep_alive_s": 1.5}
        await database.close()

        database = await Database.open(urls)  # what a restart reads
        repo = LiveSettingsRepository(database)
        again = await repo.get("pool.limits")
        assert again is not None and again.value == stored.value and again.updated_by == "ann"
        assert await repo.delete("pool.limits", "root", "pool.limits.reset") is True
        assert await repo.get("pool.limits") is None
        async with database.session() as session:
            changes = (
                await session.scalars(select(AdminChangeRow).order_by(AdminChangeRow.id))
            ).all()
            rows = [(c.actor, c.action, c.target, c.detail) for c in changes]
        await database.close()
        assert rows == [
            ("root", "pool.limits.update", "pool.limits", {"max_models": 2}),
            ("ann", "pool.limits.update", "pool.limits", {"max_models": 3, "keep_alive_s": 1.5}),
            ("root", "pool.limits.reset", "pool.limits", {}),
        ]

    asyncio.run(run())

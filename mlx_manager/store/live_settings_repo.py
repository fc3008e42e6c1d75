"""Settings changed live through the admin API (the pool's limits), as stored rows.

One row per setting name, its body a JSON document the owning component validates on the way
out; each write and each reset is recorded in `admin_changes` in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from mlx_manager.store.database import Database
from mlx_manager.store.tables import AdminChangeRow, LiveSettingRow, utc_now


@dataclass(frozen=True, slots=True)
class LiveSetting:
    name: str
    value: dict[str, Any]
    updated_by: str
    updated_at: datetime


class LiveSettingsRepository:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def get(self, name: str) -> LiveSetting | None:
        async with self._db.session() as session:
            row = await session.scalar(select(LiveSettingRow).where(LiveSettingRow.name == name))
            return None if row is None else _setting(row)

    async def put(self, name: str, value: dict[str, Any], actor: str, action: str) -> LiveSetting:
        async with self._db.session() as session:
            row = await session.get(LiveSettingRow, name)
            if row is None:
                row = LiveSettingRow(name=name)
                session.add(row)
            row.value, row.updated_by, row.updated_at = value, actor, utc_now()
            session.add(AdminChangeRow(actor=actor, action=action, target=name, detail=value))
            return _setting(row)

    async def delete(self, name: str, actor: str, action: str) -> bool:
        async with self._db.session() as session:
            result = await session.execute(
                delete(LiveSettingRow).where(LiveSettingRow.name == name)
            )
            session.add(AdminChangeRow(actor=actor, action=action, target=name, detail={}))
            return bool(result.rowcount)  # type: ignore[attr-defined]


def _setting(row: LiveSettingRow) -> LiveSetting:
    return LiveSetting(row.name, dict(row.value), row.updated_by, row.updated_at)

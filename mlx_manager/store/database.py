"""The store's async engine and sessions.

SQLite runs in WAL mode (readers never wait for the writer, and a committed row survives a
`kill -9`), with a busy timeout instead of "database is locked" errors and foreign keys on.
PostgreSQL needs nothing special.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from mlx_manager.store import migrate
from mlx_manager.store.urls import DatabaseUrls

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a process crash
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    """One engine per process; `session()` is a unit of work committed on success."""

    def __init__(self, urls: DatabaseUrls) -> None:
        self.urls = urls
        # A pooled server connection may have been dropped (a restart, an idle timeout):
        # checked before use. SQLite's file connections cannot be, and the check is a round
        # trip through aiosqlite's thread per transaction (the audit writer's included).
        self.engine: AsyncEngine = create_async_engine(
            urls.async_url, pool_pre_ping=not urls.is_sqlite
        )
        if urls.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    async def open(cls, urls: DatabaseUrls) -> Database:
        """Migrate the schema to the newest revision, then open the engine."""
        revision = await asyncio.to_thread(migrate.upgrade, urls)
        log.info("store: %s at revision %s", urls.display(), revision)
        return cls(urls)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()

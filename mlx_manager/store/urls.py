"""The database URL the store uses, in the async and sync driver forms.

A user writes `sqlite:///PATH` or `postgresql://...`; the server talks through async drivers
(aiosqlite, psycopg 3's async mode) and Alembic through sync ones, so one written URL gives both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

DATABASE_FILE = "mlx-manager.db"
_SQLITE = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}
_POSTGRES = {"postgresql", "postgres", "postgresql+psycopg", "postgresql+asyncpg"}


@dataclass(frozen=True, slots=True)
class DatabaseUrls:
    async_url: URL
    sync_url: URL

    @property
    def is_sqlite(self) -> bool:
        return self.sync_url.get_backend_name() == "sqlite"

    def display(self) -> str:
        """The URL with its password hidden: for logs and messages."""
        return self.sync_url.render_as_string(hide_password=True)


def database_urls(database_url: str | None, data_dir: Path) -> DatabaseUrls:
    """The URLs for `database_url` (None: SQLite in `data_dir`); ValueError if unsupported."""
    if database_url is None:
        url = URL.create("sqlite", database=str(data_dir / DATABASE_FILE))
    else:
        try:
            url = make_url(database_url)
        except Exception:  # sqlalchemy.exc.ArgumentError and friends
            raise ValueError(
                "database URL is not a valid URL (sqlite:///PATH or postgresql://…)"
            ) from None
    if url.drivername in _SQLITE:
        if url.database in (None, "", ":memory:"):
            raise ValueError("an SQLite database URL needs a file path (sqlite:///PATH)")
        return DatabaseUrls(url.set(drivername="sqlite+aiosqlite"), url.set(drivername="sqlite"))
    if url.drivername in _POSTGRES:
        psycopg = url.set(drivername="postgresql+psycopg")
        return DatabaseUrls(psycopg, psycopg)  # psycopg 3 drives both modes under one name
    raise ValueError(f"unsupported database {url.drivername!r}: use sqlite or postgresql")

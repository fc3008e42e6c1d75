"""Schema migrations (Alembic), run at server start and by `mlx-manager db upgrade`.

Alembic drives a sync connection; the server's async engine is opened after. On SQLite the
file's directory is created first (0700: it also holds the master key file)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from mlx_manager.store.urls import DatabaseUrls

MIGRATIONS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def prepare_sqlite_dir(urls: DatabaseUrls) -> None:
    """The SQLite file's directory, and the file itself readable by its owner only (SQLite
    gives its -wal and -shm files the database file's mode)."""
    if not (urls.is_sqlite and urls.sync_url.database):
        return
    path = Path(urls.sync_url.database).expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def upgrade(urls: DatabaseUrls) -> str | None:
    """Bring the schema to the newest revision; the revision it is at after."""
    prepare_sqlite_dir(urls)
    config = _config()
    engine = create_engine(urls.sync_url, poolclass=pool.NullPool)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            current = MigrationContext.configure(connection).get_current_revision()
            script = ScriptDirectory.from_config(config)
            if current is not None and current not in {s.revision for s in script.walk_revisions()}:
                raise ValueError(
                    f"the database is at schema revision {current!r}, newer than this MLX "
                    "Manager knows: upgrade MLX Manager, or use another --data-dir/--database-url"
                )
            command.upgrade(config, "head")
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()

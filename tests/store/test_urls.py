"""The database URL a user writes -> the async and sync driver URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_manager.store.urls import database_urls


def test_default_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    urls = database_urls(None, tmp_path)
    assert urls.is_sqlite
    assert urls.async_url.drivername == "sqlite+aiosqlite"
    assert urls.sync_url.database == str(tmp_path / "mlx-manager.db")


def test_postgres_urls_use_psycopg_and_hide_the_password(tmp_path: Path) -> None:
    urls = database_urls("postgresql://u:hunter2@db.local:5433/mm", tmp_path)
    assert urls.async_url.drivername == urls.sync_url.drivername == "postgresql+psycopg"
    assert "hunter2" not in urls.display()
    assert urls.sync_url.port == 5433


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "unsupported database"),
        ("sqlite://", "needs a file path"),
        ("sqlite:///:memory:", "needs a file path"),
        ("not a url", "not a valid URL"),
    ],
)
def test_bad_urls_are_named(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        database_urls(url, tmp_path)

"""`mlx-manager db upgrade` and `mlx-manager secrets rotate`, run as a user would."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mlx_manager.cli import main
from mlx_manager.config import ProviderSettings
from mlx_manager.security.secret_box import ENV_VAR, load_keyring
from mlx_manager.store import migrate
from mlx_manager.store.database import Database
from mlx_manager.store.routing_repo import RoutingRepository, StoredProvider
from mlx_manager.store.urls import database_urls

SECRET = "sk-rotate-me-0123456789"


def _store_provider(data_dir: Path) -> None:
    async def run() -> None:
        database = await Database.open(database_urls(None, data_dir))
        try:
            settings = ProviderSettings(name="p", kind="openai", base_url="https://x.example/v1")
            repo = RoutingRepository(database, lambda: load_keyring(data_dir))
            await repo.save_provider(StoredProvider(settings, SECRET, None), "t", created=True)
        finally:
            await database.close()

    asyncio.run(run())


def _stored_key(data_dir: Path) -> str | None:
    async def run() -> str | None:
        database = await Database.open(database_urls(None, data_dir))
        try:
            repo = RoutingRepository(database, lambda: load_keyring(data_dir))
            providers, _ = await repo.load()
            return providers[0].api_key
        finally:
            await database.close()

    return asyncio.run(run())


def test_db_upgrade_creates_an_owner_only_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLX_MANAGER_DATA_DIR", raising=False)
    assert main(["db", "upgrade", "--data-dir", str(tmp_path / "d")]) == 0
    assert f"at revision {migrate.head_revision()}" in capsys.readouterr().out
    database = tmp_path / "d" / "mlx-manager.db"
    assert database.stat().st_mode & 0o077 == 0
    assert (tmp_path / "d").stat().st_mode & 0o077 == 0


def test_db_upgrade_names_a_bad_url_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--database-url", "mysql://x/y"]) == 1
    err = capsys.readouterr().err
    assert "unsupported database" in err and "Traceback" not in err


def test_rotate_with_the_key_file_replaces_the_master_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    data_dir = tmp_path / "d"
    _store_provider(data_dir)
    before = json.loads((data_dir / "secret.key").read_text())["keys"]
    assert main(["secrets", "rotate", "--data-dir", str(data_dir)]) == 0
    assert "re-encrypted 1 key(s)" in capsys.readouterr().out
    after = json.loads((data_dir / "secret.key").read_text())["keys"]
    assert len(after) == 1 and after != before
    assert _stored_key(data_dir) == SECRET  # readable under the new key alone


def test_rotate_with_env_keys_re_encrypts_under_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = "0123456789abcdef" * 4, "fedcba9876543210" * 4
    data_dir = tmp_path / "d"
    monkeypatch.setenv(ENV_VAR, old)
    _store_provider(data_dir)
    monkeypatch.setenv(ENV_VAR, f"{new},{old}")
    assert main(["secrets", "rotate", "--data-dir", str(data_dir)]) == 0
    assert "re-encrypted 1 key(s)" in capsys.readouterr().out
    monkeypatch.setenv(ENV_VAR, new)
    assert _stored_key(data_dir) == SECRET
    assert not (data_dir / "secret.key").exists()

"""`mlx-manager db upgrade` and `mlx-manager secrets rotate`: the store's offline commands.

Rotation re-encrypts every stored upstream key under the newest master key in one
transaction, and only then drops the older keys from the key file, so a crash part-way leaves
every row readable. With MLX_MANAGER_SECRET_KEY (comma-separated, newest first) the operator
puts the new key first, runs the command, then removes the old one from the variable.
"""

from __future__ import annotations

import asyncio
import os

from mlx_manager.config import StoreConfig
from mlx_manager.security.secret_box import (
    ENV_VAR,
    Keyring,
    add_file_key,
    load_keyring,
    prune_file_keys,
)
from mlx_manager.store import migrate
from mlx_manager.store.accounts_repo import AccountsRepository
from mlx_manager.store.database import Database
from mlx_manager.store.routing_repo import RoutingRepository
from mlx_manager.store.urls import database_urls


def db_upgrade(config: StoreConfig) -> str:
    urls = database_urls(config.database_url, config.resolved_data_dir())
    revision = migrate.upgrade(urls)
    return f"{urls.display()}: at revision {revision}"


def secrets_rotate(config: StoreConfig) -> str:
    data_dir = config.resolved_data_dir()
    from_env = bool(os.environ.get(ENV_VAR))
    keyring = load_keyring(data_dir) if from_env else add_file_key(data_dir)
    rotated = asyncio.run(_rotate(config, keyring))
    if from_env:
        return (
            f"re-encrypted {rotated} key(s) under the first key of {ENV_VAR}; "
            "the older keys there can now be removed"
        )
    prune_file_keys(data_dir, keep=1)
    return f"re-encrypted {rotated} key(s) under a new master key; older keys removed"


async def _rotate(config: StoreConfig, keyring: Keyring) -> int:
    database = await Database.open(database_urls(config.database_url, config.resolved_data_dir()))
    try:
        rotated = await RoutingRepository(database, lambda: keyring).rotate_keys()
        accounts = AccountsRepository(database, lambda: keyring)
        return rotated + await accounts.rotate_server_secrets(keyring)
    finally:
        await database.close()

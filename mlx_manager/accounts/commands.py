"""`mlx-manager users create-admin`: the first administrator, made offline on the server's
store (the other way in is the one-time set-up token a server bound off loopback prints)."""

from __future__ import annotations

import asyncio

from mlx_manager.accounts.service import AccountService
from mlx_manager.config import StoreConfig
from mlx_manager.security.principal import Role
from mlx_manager.security.secret_box import load_keyring
from mlx_manager.store.accounts_repo import AccountsRepository
from mlx_manager.store.database import Database
from mlx_manager.store.urls import database_urls


def create_admin(config: StoreConfig, username: str, password: str) -> str:
    async def run() -> str:
        data_dir = config.resolved_data_dir()
        database = await Database.open(database_urls(config.database_url, data_dir))
        try:
            accounts = AccountService()
            await accounts.start(AccountsRepository(database, lambda: load_keyring(data_dir)))
            user = await accounts.create_user(username, password, Role.ADMIN, "cli")
            return f"created administrator {user.username!r} (id {user.id})"
        finally:
            await database.close()

    return asyncio.run(run())

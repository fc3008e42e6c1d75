"""Users, API keys and the server's own secrets, as stored rows.

Queries take bound parameters only; a presented API key is looked up by its keyed hash.
Every admin change is recorded in `admin_changes` (who, what, when; never a secret).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError

from mlx_manager.errors import Conflict
from mlx_manager.security.principal import KeyScopes, Role
from mlx_manager.security.secret_box import Keyring
from mlx_manager.store.database import Database
from mlx_manager.store.tables import (
    AdminChangeRow,
    ApiKeyRow,
    ServerSecretRow,
    UserRow,
    utc_now,
)


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    role: Role
    disabled: bool
    token_version: int
    created_at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "role": self.role.value,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    user_id: int
    name: str
    prefix: str
    scopes: KeyScopes
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "name": self.name,
            "prefix": self.prefix,
            "models": list(self.scopes.models),
            "rpm": self.scopes.rpm,
            "tpm": self.scopes.tpm,
            "local_only": self.scopes.local_only,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked": self.revoked_at is not None,
            "created_at": self.created_at.isoformat(),
        }


def _user(row: UserRow) -> UserRecord:
    return UserRecord(
        row.id, row.username, Role(row.role), row.disabled, row.token_version, row.created_at
    )


def _key(row: ApiKeyRow) -> KeyRecord:
    s = row.scopes
    scopes = KeyScopes(
        tuple(s.get("models", ())), s.get("rpm"), s.get("tpm"), bool(s.get("local_only"))
    )
    return KeyRecord(
        row.id,
        row.user_id,
        row.name,
        row.prefix,
        scopes,
        row.expires_at,
        row.revoked_at,
        row.created_at,
    )


def _scopes_json(scopes: KeyScopes) -> dict[str, Any]:
    return {
        "models": list(scopes.models),
        "rpm": scopes.rpm,
        "tpm": scopes.tpm,
        "local_only": scopes.local_only,
    }


class AccountsRepository:
    def __init__(self, database: Database, keys: Callable[[], Keyring]) -> None:
        self._db = database
        self._keys = keys

    async def has_accounts(self) -> bool:
        """Any user or API key exists: the server then requires credentials."""
        async with self._db.session() as session:
            users = await session.scalar(select(exists().where(UserRow.id.is_not(None))))
            keys = await session.scalar(select(exists().where(ApiKeyRow.id.is_not(None))))
            return bool(users or keys)

    async def count_admins(self) -> int:
        async with self._db.session() as session:
            query = select(func.count()).where(UserRow.role == Role.ADMIN.value, ~UserRow.disabled)
            return int(await session.scalar(query) or 0)

    async def create_user(
        self, username: str, password_hash: str, role: Role, actor: str
    ) -> UserRecord:
        try:
            async with self._db.session() as session:
                row = UserRow(
                    username=username,
                    password_hash=password_hash,
                    role=role.value,
                    disabled=False,
                    token_version=1,
                )
                session.add(row)
                await session.flush()
                session.add(_change(actor, "user.create", username, {"role": role.value}))
                return _user(row)
        except IntegrityError:
            raise Conflict(f"the user name {username!r} is taken") from None

    async def user(self, user_id: int) -> UserRecord | None:
        async with self._db.session() as session:
            row = await session.get(UserRow, user_id)
            return _user(row) if row is not None else None

    async def login_record(self, username: str) -> tuple[UserRecord, str] | None:
        async with self._db.session() as session:
            row = await session.scalar(select(UserRow).where(UserRow.username == username))
            return (_user(row), row.password_hash) if row is not None else None

    async def password_hash(self, user_id: int) -> str | None:
        async with self._db.session() as session:
            return await session.scalar(select(UserRow.password_hash).where(UserRow.id == user_id))

    async def users(self) -> list[UserRecord]:
        async with self._db.session() as session:
            rows = (await session.scalars(select(UserRow).order_by(UserRow.id))).all()
            return [_user(row) for row in rows]

    async def change_user(
        self,
        user_id: int,
        actor: str,
        action: str,
        *,
        role: Role | None = None,
        disabled: bool | None = None,
        password_hash: str | None = None,
    ) -> UserRecord | None:
        """Apply a change and bump the token version: open sessions end at once."""
        values: dict[str, Any] = {
            "token_version": UserRow.token_version + 1,
            "updated_at": utc_now(),
        }
        detail: dict[str, Any] = {}
        if role is not None:
            values["role"] = detail["role"] = role.value
        if disabled is not None:
            values["disabled"] = detail["disabled"] = disabled
        if password_hash is not None:
            values["password_hash"] = password_hash
        async with self._db.session() as session:
            result = await session.execute(
                update(UserRow).where(UserRow.id == user_id).values(**values)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None
            row = await session.get(UserRow, user_id, populate_existing=True)
            assert row is not None
            session.add(_change(actor, action, row.username, detail))
            return _user(row)

    async def create_key(
        self,
        user_id: int,
        name: str,
        prefix: str,
        key_hash: str,
        scopes: KeyScopes,
        expires_at: datetime | None,
        actor: str,
    ) -> KeyRecord:
        async with self._db.session() as session:
            row = ApiKeyRow(
                user_id=user_id,
                name=name,
                prefix=prefix,
                key_hash=key_hash,
                scopes=_scopes_json(scopes),
                expires_at=expires_at,
            )
            session.add(row)
            await session.flush()
            detail = {"user_id": user_id, "prefix": prefix, **_scopes_json(scopes)}
            session.add(_change(actor, "key.create", str(row.id), detail))
            return _key(row)

    async def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        async with self._db.session() as session:
            row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
            return _key(row) if row is not None else None

    async def keys(self, user_id: int | None = None) -> list[KeyRecord]:
        query = select(ApiKeyRow).order_by(ApiKeyRow.id)
        if user_id is not None:
            query = query.where(ApiKeyRow.user_id == user_id)
        async with self._db.session() as session:
            return [_key(row) for row in (await session.scalars(query)).all()]

    async def revoke_key(self, key_id: int, actor: str) -> KeyRecord | None:
        async with self._db.session() as session:
            row = await session.get(ApiKeyRow, key_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = utc_now()
                session.add(_change(actor, "key.revoke", str(key_id), {"prefix": row.prefix}))
            return _key(row)

    async def server_secret(self, name: str) -> bytes:
        """The named 32-byte secret, made on first use; stored encrypted under the keyring."""
        keyring = self._keys()
        context = f"server_secret:{name}"
        async with self._db.session() as session:
            row = await session.get(ServerSecretRow, name)
            if row is not None:
                return bytes.fromhex(keyring.decrypt(row.ciphertext, context))
        value = secrets.token_bytes(32)
        try:
            async with self._db.session() as session:
                session.add(
                    ServerSecretRow(name=name, ciphertext=keyring.encrypt(value.hex(), context))
                )
        except IntegrityError:  # another instance made it first: use theirs
            return await self.server_secret(name)
        return value

    async def rotate_server_secrets(self, keyring: Keyring) -> int:
        rotated = 0
        async with self._db.session() as session:
            for row in (await session.scalars(select(ServerSecretRow))).all():
                if keyring.needs_rotation(row.ciphertext):
                    row.ciphertext = keyring.rotate(row.ciphertext, f"server_secret:{row.name}")
                    rotated += 1
        return rotated

    async def record(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        async with self._db.session() as session:
            session.add(_change(actor, action, target, detail))


def _change(actor: str, action: str, target: str, detail: dict[str, Any]) -> AdminChangeRow:
    return AdminChangeRow(actor=actor, action=action, target=target, detail=detail)

"""Accounts administration (admin only):

- `GET /admin/users`; `POST /admin/users` (`{username, password, role}`);
  `POST /admin/users/{id}/approve`, `/disable`, `/enable`; `PUT /admin/users/{id}/role`
  (`{role}`). A change of role or state ends the user's open sessions at once.
- `GET /admin/keys[?user_id=]`; `POST /admin/keys` (`{name, user_id, models, rpm, tpm,
  expires_in_days, local_only}`: the key is in this answer only); `DELETE /admin/keys/{id}`
  revokes it.
Every change is recorded (who, what, when) in the database.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from mlx_manager.accounts.service import USERNAME_PATTERN, AccountService
from mlx_manager.api.auth import Admin, require_admin
from mlx_manager.api.deps import runtime_of
from mlx_manager.security.principal import KeyScopes, Role

router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=1, max_length=1024)
    role: Role = Role.USER


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=128)
    user_id: int | None = None  # default: the calling admin's own account
    models: list[str] = Field(default_factory=list, max_length=64)
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    expires_in_days: float | None = Field(None, gt=0, le=3650)
    local_only: bool = False


def _accounts(request: Request) -> AccountService:
    return runtime_of(request).accounts


@router.get("/users")
async def list_users(request: Request) -> dict[str, Any]:
    users = await _accounts(request).users()
    return {"object": "list", "data": [u.view() for u in users]}


@router.post("/users", status_code=201)
async def create_user(body: NewUser, request: Request, admin: Admin) -> dict[str, Any]:
    user = await _accounts(request).create_user(
        body.username, body.password, body.role, admin.subject
    )
    return user.view()


@router.post("/users/{user_id}/approve")
async def approve(user_id: int, request: Request, admin: Admin) -> dict[str, Any]:
    return (await _accounts(request).change_user(user_id, admin, role=Role.USER)).view()


@router.post("/users/{user_id}/disable")
async def disable(user_id: int, request: Request, admin: Admin) -> dict[str, Any]:
    return (await _accounts(request).change_user(user_id, admin, disabled=True)).view()


@router.post("/users/{user_id}/enable")
async def enable(user_id: int, request: Request, admin: Admin) -> dict[str, Any]:
    return (await _accounts(request).change_user(user_id, admin, disabled=False)).view()


@router.put("/users/{user_id}/role")
async def change_role(
    user_id: int, body: RoleChange, request: Request, admin: Admin
) -> dict[str, Any]:
    return (await _accounts(request).change_user(user_id, admin, role=body.role)).view()


@router.get("/keys")
async def list_keys(request: Request, user_id: int | None = None) -> dict[str, Any]:
    keys = await _accounts(request).keys(user_id)
    return {"object": "list", "data": [k.view() for k in keys]}


@router.post("/keys", status_code=201)
async def create_key(body: NewKey, request: Request, admin: Admin) -> dict[str, Any]:
    scopes = KeyScopes(tuple(body.models), body.rpm, body.tpm, body.local_only)
    issued = await _accounts(request).create_key(
        admin, body.user_id, body.name, scopes, body.expires_in_days
    )
    return {**issued.record.view(), "key": issued.key}


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: int, request: Request, admin: Admin) -> dict[str, Any]:
    return (await _accounts(request).revoke_key(key_id, admin)).view()

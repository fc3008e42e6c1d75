"""Sign-in for people (the web UI): `POST /auth/login`, `/auth/logout`, `/auth/register`,
`/auth/setup` (the first admin, with the one-time token printed at start) on the public router;
`GET /auth/me` and `POST /auth/password` need a session or a key.

A session is a JWT in an HttpOnly, SameSite=Strict cookie (Secure over https), with a CSRF
cookie the page echoes in `x-csrf-token` on writes. The password never comes back, and the
token only as the cookie.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mlx_manager.accounts.service import USERNAME_PATTERN, AccountService
from mlx_manager.api.auth import Authenticated
from mlx_manager.api.deps import runtime_of
from mlx_manager.errors import InvalidRequest
from mlx_manager.security.credentials import CSRF_COOKIE, SESSION_COOKIE
from mlx_manager.security.principal import Role
from mlx_manager.security.session_tokens import SESSION_TTL_S
from mlx_manager.store.accounts_repo import UserRecord

public_router = APIRouter(prefix="/auth")
router = APIRouter(prefix="/auth")


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=1, max_length=1024)


class Setup(Credentials):
    token: str = Field(min_length=1, max_length=256)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


def _accounts(request: Request) -> AccountService:
    return runtime_of(request).accounts


def _start_session(request: Request, response: Response, token: str) -> None:
    secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_TTL_S,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(24),
        max_age=SESSION_TTL_S,
        httponly=False,  # the page reads it to echo it
        secure=secure,
        samesite="strict",
        path="/",
    )


@public_router.post("/login")
async def login(body: Credentials, request: Request, response: Response) -> dict[str, Any]:
    user, token = await _accounts(request).login(body.username, body.password)
    _start_session(request, response, token)
    return {"user": user.view()}


@public_router.post("/logout")
async def logout(response: Response) -> dict[str, Any]:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return {"signed_out": True}


@public_router.post("/register", status_code=201)
async def register(body: Credentials, request: Request) -> dict[str, Any]:
    user: UserRecord = await _accounts(request).register(body.username, body.password)
    waiting = user.role is Role.PENDING
    return {"user": user.view(), "pending_approval": waiting}


@public_router.post("/setup", status_code=201)
async def setup(body: Setup, request: Request, response: Response) -> dict[str, Any]:
    accounts = _accounts(request)
    user = await accounts.setup_admin(body.token, body.username, body.password)
    _start_session(request, response, accounts.session_token(user))
    return {"user": user.view()}


@router.get("/me")
async def me(principal: Authenticated) -> dict[str, Any]:
    return {
        "subject": principal.subject,
        "role": principal.role.value,
        "user_id": principal.user_id,
        "key_id": principal.key_id,
        "via": principal.via,
    }


@router.post("/password")
async def change_password(
    body: PasswordChange, request: Request, response: Response, principal: Authenticated
) -> dict[str, Any]:
    accounts = _accounts(request)
    if principal.user_id is None:
        raise InvalidRequest("only an account has a password")
    await accounts.change_password(principal.user_id, body.current_password, body.new_password)
    user = await accounts.user(principal.user_id)
    if user is not None and principal.via == "session":  # this session continues
        _start_session(request, response, accounts.session_token(user))
    return {"changed": True}

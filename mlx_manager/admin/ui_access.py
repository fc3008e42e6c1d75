"""Who may see a page of the web UI, decided from the principal the auth middleware found
(api/auth.py) with the API's own check, never from a path.

`require_ui_admin` is the dependency of every /ui page but the login page: no session (or an
ended, invalid one) is a 303 to `/ui/login?next=...` rather than the API's 401, and a
signed-in non-admin (a user, an account awaiting approval) is a 403 page saying so.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from fastapi import Request

from mlx_manager.api.auth import require_principal
from mlx_manager.errors import AuthenticationFailed, PermissionDenied
from mlx_manager.security.principal import Principal

UI_ROOT = "/ui"
LOGIN_PATH = f"{UI_ROOT}/login"


class LoginRequired(Exception):
    """No usable session: the browser goes to the login page, then back to `next_path`."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class NotAnAdmin(Exception):
    """Signed in, but not as an administrator."""

    def __init__(self, message: str, principal: Principal | None) -> None:
        super().__init__(message)
        self.message = message
        self.principal = principal


async def require_ui_admin(request: Request) -> Principal:
    # async like require_principal: FastAPI runs a plain def dependency on a worker thread
    try:
        principal = await require_principal(request)
    except AuthenticationFailed:
        raise LoginRequired(_here(request)) from None
    except PermissionDenied as exc:  # an account awaiting approval
        state = request.scope.get("state", {})
        raise NotAnAdmin(exc.message, state.get("principal")) from None
    if not principal.is_admin:
        raise NotAnAdmin("these pages are for administrators", principal)
    return principal


async def current_principal(request: Request) -> Principal | None:
    """The caller when it is an admin who could pass `require_ui_admin`, else None."""
    try:
        return await require_ui_admin(request)
    except (LoginRequired, NotAnAdmin):
        return None


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def login_url(next_path: str) -> str:
    return f"{LOGIN_PATH}?next={quote(safe_next(next_path), safe='/')}"


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a page of this UI only (never another site: an open
    redirect would lend our origin to a phishing link)."""
    if not value or any(c in value for c in "\\\r\n\t") or value.startswith("//"):
        return UI_ROOT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return UI_ROOT
    if parts.path != UI_ROOT and not parts.path.startswith(f"{UI_ROOT}/"):
        return UI_ROOT
    if parts.path == LOGIN_PATH:
        return UI_ROOT
    return value

"""The admin web UI at /ui: server-rendered page shells (Jinja2) whose data comes from the
existing JSON APIs through fetch (Alpine.js components in admin/static): the UI adds no
logic the API lacks, and every asset is in the package (no CDN, no Node at run time).

- Public: `GET /ui/login` and the files under `/ui/static/`.
- Every other page is on a router whose dependency is `require_ui_admin` (admin/ui_access.py):
  no session is a 303 to the login page, a non-admin a 403 page. tests/api/
  test_route_protection.py walks the route table to keep it so.
- A page of another module joins the nav by being on a router listed in `PAGE_ROUTERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from mlx_manager.admin.ui_access import (
    LOGIN_PATH,
    UI_ROOT,
    LoginRequired,
    NotAnAdmin,
    current_principal,
    login_url,
    require_ui_admin,
    safe_next,
)
from mlx_manager.security.principal import Principal

HERE = Path(__file__).parent
STATIC_PATH = f"{UI_ROOT}/static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.trim_blocks = True
templates.env.lstrip_blocks = True

# Pages: scripts and styles from this origin only (Alpine.js evaluates its attribute
# expressions, hence 'unsafe-eval'); no framing; nothing fetched from elsewhere.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

public_router = APIRouter(prefix=UI_ROOT, include_in_schema=False)
router = APIRouter(
    prefix=UI_ROOT, dependencies=[Depends(require_ui_admin)], include_in_schema=False
)
UiAdmin = Annotated[Principal, Depends(require_ui_admin)]


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    path: str
    template: str  # its page shell: the data comes from the JSON APIs, read by its script


NAV = (
    NavItem("Dashboard", UI_ROOT, "dashboard.html"),
    NavItem("Models", f"{UI_ROOT}/models", "models.html"),
    NavItem("Providers & routing", f"{UI_ROOT}/providers", "providers.html"),
    NavItem("Users & keys", f"{UI_ROOT}/users", "users.html"),
    NavItem("Request log", f"{UI_ROOT}/requests", "requests.html"),
    NavItem("Playground", f"{UI_ROOT}/playground", "playground.html"),
)
# The routers whose GET routes are pages; a nav entry without one shows as not yet available.
PAGE_ROUTERS: list[APIRouter] = [router]


def _served_pages() -> set[str]:
    return {
        getattr(route, "path", "")
        for page_router in PAGE_ROUTERS
        for route in page_router.routes
        if "GET" in (getattr(route, "methods", None) or ())
    }


def render(
    request: Request,
    template: str,
    title: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """A page in the base layout: the nav (the current page marked), the signed-in user."""
    served = _served_pages()
    nav = [
        {
            "label": item.label,
            "path": item.path,
            "current": item.path == request.url.path,
            "available": item.path in served,
        }
        for item in NAV
    ]
    values = {"title": title, "nav": nav, "principal": principal, "static": STATIC_PATH}
    return templates.TemplateResponse(
        request,
        template,
        {**values, **context},
        status_code=status_code,
        headers=PAGE_HEADERS,
    )


@public_router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    target = safe_next(next)
    if await current_principal(request) is not None:  # signed in already, or the open loopback mode
        return RedirectResponse(target, status_code=303)
    return render(request, "login.html", "Sign in", None, next_path=target)


def _serve_page(item: NavItem) -> None:
    """The nav entry's page on the admins' router: its shell in the base layout."""

    async def page(request: Request, principal: UiAdmin) -> Response:
        return render(request, item.template, item.label, principal)

    router.add_api_route(item.path.removeprefix(UI_ROOT), page, methods=["GET"])


for _item in NAV:
    _serve_page(_item)


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(login_url(exc.next_path), status_code=303)


async def _not_an_admin(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotAnAdmin)
    return render(
        request, "forbidden.html", "Administrators only", exc.principal, 403, reason=exc.message
    )


def install(app: FastAPI) -> None:
    """The UI's routers, its static files and its two answers to a refused page."""
    app.include_router(public_router)
    for page_router in PAGE_ROUTERS:
        app.include_router(page_router)
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="ui-static")
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(NotAnAdmin, _not_an_admin)


__all__ = ["LOGIN_PATH", "PAGE_ROUTERS", "install", "render", "router"]

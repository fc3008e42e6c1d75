"""Who gets a page of the web UI, in-process (no browser): the login redirect with a safe
`next`, the 403 page for a non-admin, the open loopback mode, the pages' security headers,
and the static files served from the package."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlx_manager.admin.ui_access import safe_next
from mlx_manager.api.app import create_app
from mlx_manager.config import load_settings

ADMIN = {"username": "ada", "password": "ada-password-123", "role": "admin"}
USER = {"username": "ben", "password": "ben-password-123", "role": "user"}


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory: pytest.TempPathFactory) -> object:
    root = tmp_path_factory.mktemp("ui_access")
    (root / "models").mkdir()
    return load_settings({"model_dir": [str(root / "models")], "data_dir": str(root / "d")})


@pytest.fixture(scope="module")
def client(app_settings: object) -> Iterator[TestClient]:
    app = create_app(app_settings)  # type: ignore[arg-type]
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 5000)) as test_client:
        yield test_client


def _login(client: TestClient, who: dict[str, str]) -> None:
    client.cookies.clear()
    reply = client.post(
        "/auth/login", json={"username": who["username"], "password": who["password"]}
    )
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "/ui"),
        ("/ui/users?x=1", "/ui/users?x=1"),
        ("/ui", "/ui"),
        ("https://evil.example/ui", "/ui"),
        ("//evil.example/ui", "/ui"),
        ("/\\evil.example", "/ui"),
        ("/admin/users", "/ui"),
        ("/uix", "/ui"),
        ("/ui/login", "/ui"),
        ("javascript:alert(1)", "/ui"),
        ("/ui/x\r\nSet-Cookie: a=b", "/ui"),
    ],
)
def test_only_pages_of_the_ui_are_a_place_to_go_after_login(
    given: str | None, expected: str
) -> None:
    assert safe_next(given) == expected


def test_open_loopback_mode_then_accounts(client: TestClient) -> None:
    # No account: the loopback caller is the anonymous admin, straight in.
    page = client.get("/ui", follow_redirects=False)
    assert page.status_code == 200 and "anonymous" in page.text
    assert "data-logout" not in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"
    assert client.get("/ui/login", follow_redirects=False).headers["location"] == "/ui"
    made = client.post("/admin/users", json=ADMIN)  # the last thing the open mode does
    assert made.status_code == 201, made.text
    _login(client, ADMIN)
    made = client.post(
        "/admin/users", json=USER, headers={"x-csrf-token": client.cookies["mlxm_csrf"]}
    )
    assert made.status_code == 201, made.text

    # Accounts exist: a page without a session goes to the login page, and comes back.
    client.cookies.clear()
    away = client.get("/ui?tab=2", follow_redirects=False)
    assert away.status_code == 303 and away.headers["location"] == "/ui/login?next=/ui%3Ftab%3D2"
    assert away.content == b""
    login = client.get("/ui/login?next=https://evil.example/")
    assert login.status_code == 200 and 'data-next="/ui"' in login.text
    assert 'for="username"' in login.text and 'for="password"' in login.text

    _login(client, ADMIN)
    page = client.get("/ui")
    assert page.status_code == 200 and "ada" in page.text and "data-logout" in page.text
    assert 'aria-current="page"' in page.text
    back = client.get("/ui/login?next=/ui%3Ftab%3D2", follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == "/ui?tab=2"

    # A user who is not an admin: a 403 page in words, no nav, no data.
    _login(client, USER)
    refused = client.get("/ui")
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    assert "for administrators" in refused.text and 'aria-label="Main"' not in refused.text

    # An ended or forged session is no session: back to the login page.
    client.cookies.clear()
    client.cookies.set("mlxm_session", "forged.token.value")
    forged = client.get("/ui", follow_redirects=False)
    assert forged.status_code == 303 and forged.headers["location"].startswith("/ui/login")


def test_static_files_come_from_the_package(client: TestClient) -> None:
    static = Path(__file__).parents[2] / "mlx_manager" / "admin" / "static"
    for name in ("ui.js", "ui.css", "vendor/htmx.min.js", "vendor/alpine.min.js"):
        reply = client.get(f"/ui/static/{name}")
        assert reply.status_code == 200, name
        assert reply.content == (static / name).read_bytes()
    assert client.get("/ui/static/ui.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/static/missing.js").status_code == 404


def test_no_page_or_asset_loads_from_another_site() -> None:
    """Offline: templates, styles and our scripts load nothing from another origin (a
    placeholder showing a URL's shape is text, not a load)."""
    admin = Path(__file__).parents[2] / "mlx_manager" / "admin"
    loads = re.compile(
        r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//"""
        r"""|@import|fetch\(\s*["'`](?:https?:)?//|new\s+EventSource\(\s*["'`](?:https?:)?//""",
        re.IGNORECASE,
    )
    files = [*admin.glob("templates/*.html"), *admin.glob("static/*.*")]
    assert len(files) >= 8
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not loads.search(text), f"{path}: {loads.search(text)}"
    assert loads.search('<script src="https://cdn.example/x.js">')  # the check can fail

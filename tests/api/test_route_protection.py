"""Deny by default, proven on the app's own route table: every route but the public ones
answers 401 with no credential and with a wrong one, so a route added later without the
router's check fails here (issue 17's first acceptance point). The web UI's pages (/ui) are
for browsers: without credentials they send the browser to the login page, with no content."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from mlx_manager.admin.ui_access import require_ui_admin
from mlx_manager.api.app import create_app
from mlx_manager.api.auth import require_principal
from mlx_manager.config import load_settings

# The only routes a caller may reach without credentials.
PUBLIC = {
    ("GET", "/"),
    ("HEAD", "/"),
    ("GET", "/health"),
    ("POST", "/auth/login"),
    ("POST", "/auth/logout"),
    ("POST", "/auth/register"),
    ("POST", "/auth/setup"),
    ("GET", "/ui/login"),
}
# Mounted apps, outside the route table: only the web UI's static files (scripts, styles).
PUBLIC_MOUNTS = {"/ui/static"}
UI_PAGES = "/ui"


def _is_ui_page(path: str) -> bool:
    return path == UI_PAGES or path.startswith(f"{UI_PAGES}/")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("protection")
    (root / "models").mkdir()
    settings = load_settings(
        {
            "api_key": "the-real-key",
            "model_dir": [str(root / "models")],
            "data_dir": str(root / "d"),
        }
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as test_client:
        yield test_client


def _flat(routes: list[Any]) -> Iterator[Any]:
    """Every route as served: FastAPI >= 0.16x keeps included routers as branches whose
    effective routes carry the include's dependencies."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "effective_route_contexts"):
            yield from route.effective_route_contexts()


def _routes(client: TestClient) -> list[tuple[str, str, Any]]:
    found = []
    for route in _flat(client.app.routes):  # type: ignore[attr-defined]
        for method in sorted(route.methods or ()):
            found.append((method, route.path, route))
    return found


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_the_table_is_not_empty_and_public_routes_exist(client: TestClient) -> None:
    routes = {(m, p) for m, p, _ in _routes(client)}
    assert routes >= PUBLIC
    assert len(routes) > 40  # the whole API is walked, not a sample


def test_every_other_route_carries_the_check(client: TestClient) -> None:
    for method, path, route in _routes(client):
        if (method, path) in PUBLIC:
            continue
        calls = {d.call for d in route.dependant.dependencies}
        check = require_ui_admin if _is_ui_page(path) else require_principal
        assert check in calls, f"{method} {path} is not protected"


@pytest.mark.parametrize("credential", [None, "Bearer wrong-key"])
def test_every_other_route_answers_401(client: TestClient, credential: str | None) -> None:
    headers = {"authorization": credential} if credential else {}
    for method, path, _ in _routes(client):
        if (method, path) in PUBLIC:
            continue
        reply = client.request(
            method, _concrete(path), headers=headers, json={}, follow_redirects=False
        )
        if _is_ui_page(path):  # a page: no content, the browser goes to the login page
            assert reply.status_code == 303, f"{method} {path}: {reply.status_code}"
            assert reply.headers["location"].startswith("/ui/login?next=/ui"), path
            assert reply.content == b"", f"{method} {path} sent content"
            continue
        assert reply.status_code == 401, f"{method} {path}: {reply.status_code} {reply.text[:200]}"
        body = reply.json()
        assert "error" in body, f"{method} {path}: not in an error shape"


def test_the_only_mounts_are_public_static_files(client: TestClient) -> None:
    mounts = {route.path for route in client.app.routes if isinstance(route, Mount)}  # type: ignore[attr-defined]
    assert mounts == PUBLIC_MOUNTS
    assert client.get("/ui/static/ui.js").status_code == 200
    # Only what is in the static folder: the templates and the code next to it stay unserved.
    for path in ("/ui/static/../ui_routes.py", "/ui/static/%2e%2e/ui_routes.py"):
        assert client.get(path).status_code == 404, path


def test_anthropic_routes_answer_401_in_their_dialect(client: TestClient) -> None:
    reply = client.post("/v1/messages", headers={"x-api-key": "wrong"}, json={})
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "authentication_error"


def test_the_right_key_gets_in(client: TestClient) -> None:
    ok = {"authorization": "Bearer the-real-key"}
    assert client.get("/v1/models", headers=ok).status_code == 200
    assert client.get("/openapi.json", headers=ok).status_code == 200
    assert client.get("/admin/users", headers=ok).status_code == 200


def test_public_routes_answer_without_credentials(client: TestClient) -> None:
    assert client.get("/health").status_code in (200, 503)
    assert client.get("/").status_code == 200
    assert (
        client.post("/auth/login", json={"username": "nobody", "password": "x"}).status_code == 401
    )


def test_metrics_can_be_switched_off(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    settings = load_settings(
        {"metrics": False, "model_dir": [str(tmp_path / "models")], "data_dir": str(tmp_path / "d")}
    )
    app = create_app(settings)
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 5000)) as off:
        reply = off.get("/metrics")  # a loopback client with no credentials configured
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "metrics_off"

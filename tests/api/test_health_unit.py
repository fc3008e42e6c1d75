"""/health while models load: 503 with Retry-After (no model needed)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from mlx_manager.accounts.service import AccountService
from mlx_manager.api.app import create_app
from mlx_manager.config import load_settings
from mlx_manager.frontend.lifecycle import EngineState


class _LoadingRuntime:
    state = EngineState.LOADING
    load_error = None
    failed_models = None  # none failed
    accounts = AccountService()  # no store: open mode

    def model_infos(self) -> list[object]:
        return []


def test_health_is_503_while_loading() -> None:
    app = create_app(load_settings({}))
    app.state.runtime = _LoadingRuntime()
    client = TestClient(app, base_url="http://localhost")  # no lifespan: nothing loads
    reply = client.get("/health")
    assert reply.status_code == 503
    assert reply.json()["status"] == "loading"
    assert reply.headers["retry-after"]

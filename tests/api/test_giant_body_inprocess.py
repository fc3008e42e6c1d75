"""The whole app in process (every middleware, the real runtime and tiny model), json.loads
observed: a refused giant body is never parsed by any layer, nor scanned for surrogates."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlx_manager.api import unicode_guard
from mlx_manager.api.app import create_app
from mlx_manager.config import load_settings

GIANT = "lorem ipsum " * (3 * 1024 * 1024 // 12)


def _wait_loaded(client: TestClient) -> None:
    ask = {"model": "tiny", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    deadline = time.monotonic() + 120
    while client.post("/v1/chat/completions", json=ask).status_code != 200:
        assert time.monotonic() < deadline, "the tiny model did not load"
        time.sleep(0.2)


def test_no_layer_parses_or_scans_a_refused_giant(
    tiny_model_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(
        {"data_dir": tmp_path / "data", "model": [f"tiny={tiny_model_dirs['llama']}"]}
    )
    app = create_app(settings)
    # The open loopback mode: no key needed from 127.0.0.1.
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 5000)) as client:
        _wait_loaded(client)
        sizes: list[int] = []
        scans: list[int] = []
        real_loads, real_scan = json.loads, unicode_guard.surrogate_error

        def loads(data: Any, *args: Any, **kwargs: Any) -> Any:
            sizes.append(len(data))
            return real_loads(data, *args, **kwargs)

        def scan(body: bytes) -> Any:
            scans.append(len(body))
            return real_scan(body)

        monkeypatch.setattr(json, "loads", loads)
        monkeypatch.setattr(unicode_guard, "surrogate_error", scan)
        body = json.dumps(
            {"model": "tiny", "messages": [{"role": "user", "content": GIANT}]}
        ).encode()
        headers = {"content-type": "application/json"}
        reply = client.post("/v1/chat/completions", content=body, headers=headers)
        assert reply.status_code == 413, reply.text
        assert reply.json()["error"]["code"] == "request_too_large"
        assert scans == [] and max(sizes, default=0) < 1000  # a model name, never the body
        # The same path still parses a normal body (the observers see it).
        small = json.dumps(
            {"model": "tiny", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        )
        assert (
            client.post("/v1/chat/completions", content=small, headers=headers).status_code == 200
        )
        assert scans == [len(small)] and len(small) in sizes

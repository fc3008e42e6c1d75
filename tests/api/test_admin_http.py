"""The model pool over HTTP against a live server: /v1/models metadata, admin load/unload/status,
eviction, 409 while busy, 503 when nothing can be evicted, and errors per model type.

The server: SmolLM2 (`smol`, loaded at startup) plus every model below the pool fixture's
directory (loaded on demand), at most two resident.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.pool.listing import render, rows_from_server
from tests.fixtures.server import ServerProcess


@pytest.fixture(scope="module")
def pool_server(
    smollm2_dir: Path, pool_model_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        *("--model", f"smol={smollm2_dir}", "--model-dir", str(pool_model_root)),
        *("--max-models", "2", "--kv-cache-gb", "0.05"),
        log_dir=tmp_path_factory.mktemp("pool-server"),
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def http(pool_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pool_server.base_url, timeout=120) as client:
        yield client


def chat(http: httpx.Client, model: str, max_tokens: int = 2) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
    return http.post("/v1/chat/completions", json={**body, "max_tokens": max_tokens})


def status(http: httpx.Client) -> dict[str, dict[str, Any]]:
    reply = http.get("/admin/models/status")
    assert reply.status_code == 200
    return {m["id"]: m for m in reply.json()["models"]}


def test_models_list_metadata(http: httpx.Client) -> None:
    cards = {card["id"]: card for card in http.get("/v1/models").json()["data"]}
    assert set(cards) == {"smol", "broken", "encoders/minilm", "m1", "m2", "m3", "org/m4", "vlm"}
    assert cards["smol"]["context_length"] == 8192 and cards["smol"]["type"] == "text"
    assert cards["encoders/minilm"]["type"] == "embeddings"
    assert cards["vlm"]["type"] == "vision" and cards["vlm"]["loaded"] is False
    assert cards["m1"]["size_bytes"] > 0 and cards["m1"]["pinned"] is False
    one = http.get("/v1/models/org/m4").json()
    assert one["id"] == "org/m4" and one["context_length"] == 2048
    rows = {row.id: row for row in rows_from_server(str(http.base_url))}  # `models --url`
    assert rows["smol"].loaded is True and rows["vlm"].loaded is False
    assert "smol" in render(list(rows.values()), as_json=False)


def test_wrong_type_and_corrupt_models_answer_clearly(http: httpx.Client) -> None:
    embeddings = chat(http, "encoders/minilm")
    assert embeddings.status_code == 400
    error = embeddings.json()["error"]
    assert error["param"] == "model" and "embeddings" in error["message"]
    vision = chat(http, "vlm")  # a llava config with garbage weights
    assert vision.status_code == 500 and "'vlm'" in vision.json()["error"]["message"]
    broken = chat(http, "broken")
    assert broken.status_code == 500
    assert broken.json()["error"]["code"] == "model_load_failed"
    assert "'broken'" in broken.json()["error"]["message"]
    assert "safetensors" in broken.json()["error"]["message"]
    assert chat(http, "m2").status_code == 200  # the pool keeps serving


def test_admin_lifecycle(http: httpx.Client) -> None:
    for model in list(status(http)):  # start from SmolLM2 alone
        if model != "smol":
            assert http.post(f"/admin/models/unload/{model}").status_code == 200
    if "smol" not in status(http):
        assert chat(http, "smol").status_code == 200
    assert set(status(http)) == {"smol"}

    loaded = http.post("/admin/models/load/org/m4")
    assert loaded.status_code == 200 and loaded.json()["model"]["pinned"] is True
    assert http.get("/v1/models/org/m4").json()["loaded"] is True
    assert set(status(http)) == {"smol", "org/m4"}

    body = {
        "model": "smol",
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 400,
        "temperature": 0,
        "stream": True,
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if '"content"' in line)
        assert status(http)["smol"]["in_flight"] == 1

        busy = http.post("/admin/models/unload/smol")
        assert busy.status_code == 409 and busy.headers["retry-after"]
        assert busy.json()["error"]["code"] == "model_busy"

        full = chat(http, "m1")  # smol busy, org/m4 pinned: nothing to evict
        assert full.status_code == 503 and int(full.headers["retry-after"]) > 0
        assert full.json()["error"]["code"] == "model_pool_full"
    _wait_idle(http, "smol")

    assert chat(http, "m1").status_code == 200  # evicts smol, the LRU idle one
    models = status(http)
    assert set(models) == {"org/m4", "m1"}
    assert models["org/m4"]["pinned"] and models["m1"]["weight_bytes"] > 0
    assert models["m1"]["kv_bytes"] > 0 and models["m1"]["last_used"] > 0

    assert http.post("/admin/models/unload/smol").status_code == 404
    assert http.post("/admin/models/unload/m1").status_code == 200
    assert http.post("/admin/models/unload/org/m4").status_code == 200  # pinned: unloads too
    assert status(http) == {}
    assert http.post("/admin/models/load/nope").status_code == 404

    again = chat(http, "smol", max_tokens=8)  # reloaded on demand
    assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"]
    full = http.get("/admin/models/status").json()
    assert full["max_models"] == 2 and full["mlx_memory"]["active_bytes"] > 0
    assert full["evictions"] >= 1 and full["loads"] >= 4


def _wait_idle(http: httpx.Client, model: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while status(http)[model]["in_flight"]:
        assert time.monotonic() < deadline, f"{model} still busy"
        time.sleep(0.05)

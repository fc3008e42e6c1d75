"""The admin models catalog and live pool limits over HTTP on a real server: badges of every
servable model, pin and unpin without reloads, limits changed live evicting idle models (seen
in /admin/models/status), 400s for bad limits, the override kept across a restart and recorded
in the admin changes, 403 for a signed-in user who is not an admin.

The server: the embedded SmolLM2 (`smol`, aliased `claude`, loaded at startup), the real
MiniLM (`minilm`) and every model below the pool fixture's directory; an admin account made
before it starts, open sign-up for the plain user.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.server import ServerProcess

ADMIN_PASSWORD = "catalog admin password 1"
USER_PASSWORD = "catalog user password 1"


def _args(minilm_dir: Path, pool_model_root: Path) -> list[str]:
    return [
        *("--model", "smol=embedded", "--model", f"minilm={minilm_dir}"),
        *("--model-dir", str(pool_model_root), "--model-alias", "claude=smol"),
        *("--max-models", "5", "--kv-cache-gb", "0.05", "--signup", "open"),
    ]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    created = subprocess.run(
        [
            *(sys.executable, "-m", "mlx_manager.cli", "users", "create-admin"),
            *("--username", "root", "--password-stdin", "--data-dir", str(root / "data")),
        ],
        input=ADMIN_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    return root


@pytest.fixture(scope="module")
def front(
    root: Path, smollm2_dir: Path, minilm_dir: Path, pool_model_root: Path
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        *_args(minilm_dir, pool_model_root),
        env={"MLX_MANAGER_DATA_DIR": str(root / "data"), "HF_HUB_OFFLINE": "1"},
        log_dir=root,
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def _login(base_url: str, username: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=120)
    reply = client.post("/auth/login", json={"username": username, "password": password})
    assert reply.status_code == 200, reply.text
    client.headers["x-csrf-token"] = client.cookies["mlxm_csrf"]
    return client


@pytest.fixture(scope="module")
def admin(front: ServerProcess) -> Iterator[httpx.Client]:
    client = _login(front.base_url, "root", ADMIN_PASSWORD)
    try:
        yield client
    finally:
        client.close()


def _rows(admin: httpx.Client) -> dict[str, dict[str, Any]]:
    reply = admin.get("/admin/models")
    assert reply.status_code == 200, reply.text
    return {row["id"]: row for row in reply.json()["data"]}


def _resident(admin: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in admin.get("/admin/models/status").json()["models"]}


def _chat(admin: httpx.Client, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    reply = admin.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text


def _eventually_resident(admin: httpx.Client, expected: set[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while set(_resident(admin)) != expected:
        assert time.monotonic() < deadline, f"resident: {set(_resident(admin))}, not {expected}"
        time.sleep(0.1)


def test_listing_with_badges(admin: httpx.Client) -> None:
    body = admin.get("/admin/models").json()
    rows = {row["id"]: row for row in body["data"]}
    assert list(rows)[:2] == ["smol", "minilm"]  # configured first, then discovered
    assert set(rows) == {"smol", "minilm", "broken", "encoders/minilm", "m1", "m2", "m3"} | {
        "org/m4",
        "vlm",
    }
    assert body["unavailable"] == [] and body["budget"]["max_models"] == 5
    assert (
        body["budget"]["max_memory_bytes"] is None and "fits_budget" in body["budget"]["fits_rule"]
    )

    smol = rows["smol"]
    assert (smol["source"], smol["aliases"], smol["type"]) == ("embedded", ["claude"], "text")
    assert smol["parameters"] == 134_515_008 and smol["context_length"] == 8192
    assert smol["quantization"] == {
        "bits": 4,
        "group_size": 32,
        "mode": "affine",
        "mixed_bits": [4, 8],
    }
    assert (smol["precision"], smol["supports_tools"], smol["tool_calls"]) == (
        "4/8-bit",
        False,
        "prompted",
    )
    assert smol["supports_thinking"] is False and smol["size_bytes"] > smol["weight_bytes"] > 0
    assert smol["residency"]["state"] == "ready" and smol["residency"]["loaded"] is True
    assert smol["residency"]["pinned"] is False and smol["residency"]["last_used"] > 0
    assert smol["load_plan"]["state"] == "resident" and smol["fits_budget"] is None
    assert smol["booked_bytes"] > 0 and smol["estimated_bytes"] > 0

    minilm = rows["minilm"]
    assert (minilm["type"], minilm["tool_calls"], minilm["source"]) == ("embeddings", None, "model")
    assert minilm["parameters"] == 22_713_728 and minilm["precision"] == "float32"
    m1 = rows["m1"]
    assert (m1["source"], m1["type"], m1["precision"], m1["family"]) == (
        "model-dir",
        "text",
        "float32",
        "llama",
    )
    assert m1["residency"] == {
        "state": "not_loaded",
        "loaded": False,
        "pinned": False,
        "in_flight": 0,
    }
    assert m1["load_plan"]["state"] == "fits" and m1["booked_bytes"] is None
    assert rows["vlm"]["type"] == "vision" and rows["encoders/minilm"]["type"] == "embeddings"
    assert rows["broken"]["parameters"] is None  # its header is not JSON: said, not a 500


def test_pin_and_unpin_without_reload(admin: httpx.Client) -> None:
    loaded = admin.post("/admin/models/load/m1", params={"pin": "false"})
    assert loaded.status_code == 200 and loaded.json()["model"]["pinned"] is False
    loads = admin.get("/admin/models/status").json()["loads"]
    pinned = admin.post("/admin/models/pin/m1")
    assert pinned.status_code == 200 and pinned.json()["model"]["pinned"] is True
    assert _rows(admin)["m1"]["residency"]["pinned"] is True
    assert admin.post("/admin/models/load/m1").status_code == 200  # loaded: no reload
    assert admin.get("/admin/models/status").json()["loads"] == loads
    unpinned = admin.post("/admin/models/unpin/m1")
    assert unpinned.status_code == 200 and unpinned.json()["model"]["pinned"] is False
    assert _resident(admin)["m1"]["pinned"] is False and "m1" in _resident(admin)
    missing = admin.post("/admin/models/pin/m2")  # not loaded
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_loaded"
    assert admin.post("/admin/models/unpin/nope").status_code == 404


def test_limits_applied_live(admin: httpx.Client) -> None:
    view = admin.get("/admin/pool/limits").json()
    assert view["source"] == "flags" and view["override"] is None
    assert view["flags"]["max_models"] == 5 and view["effective"]["max_models"] == 5
    _chat(admin, "m2")
    _chat(admin, "m3")  # LRU order now: smol, minilm (loaded at start), m1, m2, m3
    assert set(_resident(admin)) == {"smol", "minilm", "m1", "m2", "m3"}

    changed = admin.put("/admin/pool/limits", json={"max_models": 2, "keep_alive_s": 600})
    assert changed.status_code == 200, changed.text
    assert changed.json()["evicted"] == ["smol", "minilm", "m1"]
    assert (
        changed.json()["source"] == "override"
        and changed.json()["override"]["updated_by"] == "root"
    )
    _eventually_resident(admin, {"m2", "m3"})
    status = admin.get("/admin/models/status").json()
    assert status["max_models"] == 2 and status["evictions"] >= 2
    assert {m["keep_alive_s"] for m in status["models"]} == {600}

    # A memory budget below SmolLM2 (float32 on CPU, ~0.6 GB with its KV pool).
    small = admin.put("/admin/pool/limits", json={"max_memory_gb": 0.3})
    assert small.status_code == 200 and small.json()["effective"]["max_models"] == 2
    assert small.json()["effective"]["max_memory_bytes"] == 300_000_000
    rows = _rows(admin)
    assert (
        rows["smol"]["fits_budget"] is False and rows["smol"]["load_plan"]["state"] == "too_large"
    )
    assert rows["m1"]["fits_budget"] is True

    # Pinned models are never evicted: the pool stays over its limits until one is unpinned.
    assert admin.post("/admin/models/load/m2").status_code == 200
    assert admin.post("/admin/models/load/m3").status_code == 200
    one = admin.put("/admin/pool/limits", json={"max_models": 1}).json()
    assert one["evicted"] == [] and one["over_limits"] == "pinned: m2, m3"
    assert admin.get("/admin/models").json()["budget"]["over_limits"] == "pinned: m2, m3"
    assert admin.post("/admin/models/unpin/m2").status_code == 200
    _eventually_resident(admin, {"m3"})
    assert admin.get("/admin/pool/limits").json()["over_limits"] is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_models": 0}, "max_models"),
        ({"memory_limit_pct": 150}, "memory_limit_pct"),
        ({"max_memory_gb": -1}, "max_memory_gb"),
        ({"keep_alive_s": 0}, "keep_alive_s"),
        ({"max_models": "many"}, "max_models"),
        ({"max_gpus": 1}, "max_gpus"),
        ({}, None),
    ],
)
def test_bad_limits_are_400(admin: httpx.Client, body: dict[str, Any], param: str | None) -> None:
    before = admin.get("/admin/pool/limits").json()["effective"]
    reply = admin.put("/admin/pool/limits", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["message"]
    if param:
        assert param in error["message"]
    assert admin.get("/admin/pool/limits").json()["effective"] == before


def test_non_admin_is_refused(front: ServerProcess) -> None:
    anonymous = httpx.Client(base_url=front.base_url, timeout=30)
    assert anonymous.get("/admin/models").status_code == 401
    made = anonymous.post("/auth/register", json={"username": "bob", "password": USER_PASSWORD})
    assert made.status_code == 201, made.text
    bob = _login(front.base_url, "bob", USER_PASSWORD)
    assert bob.get("/v1/models").status_code == 200
    for method, path, body in [
        ("GET", "/admin/models", None),
        ("POST", "/admin/models/pin/m3", None),
        ("POST", "/admin/models/unpin/m3", None),
        ("GET", "/admin/pool/limits", None),
        ("PUT", "/admin/pool/limits", {"max_models": 9}),
        ("DELETE", "/admin/pool/limits", None),
    ]:
        reply = bob.request(method, path, json=body)
        assert reply.status_code == 403, (method, path, reply.text)


def test_override_survives_a_restart_and_is_recorded(
    front: ServerProcess, root: Path, minilm_dir: Path, pool_model_root: Path
) -> None:
    front.stop()  # the module's server; nothing after this test uses it
    again = ServerProcess(
        *_args(minilm_dir, pool_model_root),
        env={"MLX_MANAGER_DATA_DIR": str(root / "data"), "HF_HUB_OFFLINE": "1"},
        log_dir=root,
    ).wait_ready()
    try:
        admin = _login(again.base_url, "root", ADMIN_PASSWORD)
        view = admin.get("/admin/pool/limits").json()
        assert view["source"] == "override" and view["persisted"] is True
        assert view["effective"]["max_models"] == 1 and view["effective"]["max_memory_gb"] == 0.3
        assert view["flags"]["max_models"] == 5 and view["flags"]["max_memory_gb"] is None
        # smol did not fit the stored budget: not loaded at start, said in the listing.
        assert _rows(admin)["smol"]["residency"]["loaded"] is False
        reset = admin.delete("/admin/pool/limits").json()
        assert reset["source"] == "flags" and reset["effective"]["max_models"] == 5
        assert admin.get("/admin/models/status").json()["max_memory_bytes"] is None
    finally:
        again.stop()
    with sqlite3.connect(root / "data" / "mlx-manager.db") as connection:
        changes = connection.execute(
            "SELECT actor, action, target FROM admin_changes WHERE action LIKE 'pool.%' "
            "OR action LIKE 'model.%' ORDER BY id"
        ).fetchall()
    actions = [action for _, action, _ in changes]
    assert ("root", "model.pin", "m1") in changes and ("root", "model.unpin", "m2") in changes
    assert actions.count("pool.limits.update") == 3 and actions[-1] == "pool.limits.reset"

"""The audit log with accounts, over real HTTP: a request made with an API key is recorded
with its user id and key id (and a refusal by the key's scopes too), the viewer filters by
them, and a user who is not an administrator cannot read the log."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.server import ServerProcess

PASSWORD = "correct horse battery staple"
USER_PASSWORD = "a-users-own-password-1"
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}


@pytest.fixture(scope="module")
def front(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("audit-accounts")
    process = ServerProcess(
        "--model",
        f"tiny-a={tiny_model_dirs['llama']}",
        "--kv-cache-gb",
        "0.05",
        "--signup",
        "open",
        "--audit-flush-ms",
        "50",
        env={"MLX_MANAGER_DATA_DIR": str(root / "data")},
        log_dir=root,
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def _login(front: ServerProcess, username: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=front.base_url, timeout=60)
    reply = client.post("/auth/login", json={"username": username, "password": password})
    assert reply.status_code == 200, reply.text
    client.headers["x-csrf-token"] = client.cookies["mlxm_csrf"]
    return client


def _rows(admin: httpx.Client, count: int, **params: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        reply = admin.get("/admin/requests", params=params)
        assert reply.status_code == 200, reply.text
        rows: list[dict[str, Any]] = reply.json()["data"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_key_and_user_ids_are_recorded(front: ServerProcess) -> None:
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_manager.cli",
            "users",
            "create-admin",
            "--username",
            "root",
            "--password-stdin",
            "--data-dir",
            str(front.data_dir),
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    deadline = time.monotonic() + 15  # the server sees the new account within its cache time
    while httpx.get(f"{front.base_url}/v1/models").status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    admin = _login(front, "root", PASSWORD)
    admin_id = admin.get("/auth/me").json()["user_id"]
    made = admin.post("/admin/keys", json={"name": "ci", "models": ["tiny-a"]})
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["id"]

    def chat(model: str, request_id: str) -> int:
        return httpx.post(
            f"{front.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}", "x-request-id": request_id},
            json={"model": model, **CHAT},
            timeout=60,
        ).status_code

    assert chat("tiny-a", "acct-ok") == 200
    assert chat("tiny-b", "acct-refused") == 403  # the key's scopes allow tiny-a only
    rows = {r["request_id"]: r for r in _rows(admin, 2, key=str(key_id))}
    assert set(rows) == {"acct-ok", "acct-refused"}
    for row in rows.values():
        assert (row["user_id"], row["key_id"]) == (str(admin_id), str(key_id))
    assert rows["acct-ok"]["status"] == 200 and rows["acct-ok"]["backend"] == "local"
    refused = rows["acct-refused"]
    assert (refused["status"], refused["error"], refused["model"]) == (
        403,
        "model_not_allowed",
        "tiny-b",
    )
    assert [r["request_id"] for r in _rows(admin, 2, user=str(admin_id))] == [
        "acct-refused",
        "acct-ok",
    ]

    # an account that is not an administrator cannot read the log
    signup = httpx.post(
        f"{front.base_url}/auth/register", json={"username": "ann", "password": USER_PASSWORD}
    )
    assert signup.status_code == 201, signup.text
    user = _login(front, "ann", USER_PASSWORD)
    assert user.get("/auth/me").json()["role"] == "user"
    assert user.get("/admin/requests").status_code == 403

"""Accounts end to end over real HTTP: open on loopback until an admin exists; sign-up waits
for approval; role changes and disabling end sessions at once; API-key scopes (models, rate,
local_only) in both dialects; Host and cross-site checks; no secret in any log."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fixtures.server import ServerProcess
from tests.fixtures.tiny_models import no_end_tokens

ADMIN_PASSWORD = "correct horse battery staple"
BOB_PASSWORD = "bobs-secret-password-1"
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}


@pytest.fixture(scope="module")
def front(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("accounts")
    data = root / "data"
    process = ServerProcess(
        "--model",
        f"tiny-a={tiny_model_dirs['llama']}",
        "--model",
        f"tiny-b={tiny_model_dirs['llama']}",
        "--kv-cache-gb",
        "0.05",
        "--signup",
        "approval",
        env={"MLX_MANAGER_DATA_DIR": str(data)},
        log_dir=root,
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def _client(front: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=front.base_url, timeout=60)


def _login(front: ServerProcess, username: str, password: str) -> httpx.Client:
    client = _client(front)
    reply = client.post("/auth/login", json={"username": username, "password": password})
    assert reply.status_code == 200, reply.text
    client.headers["x-csrf-token"] = client.cookies["mlxm_csrf"]
    return client


def _chat(front: ServerProcess, key: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{front.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, **CHAT},
        timeout=60,
    )


def test_the_whole_account_life(front: ServerProcess) -> None:
    anonymous = _client(front)
    # Open: no credentials configured, a loopback client may do everything.
    assert anonymous.get("/v1/models").status_code == 200

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
        input=ADMIN_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    # The server sees the new account within its cache time; then credentials are required.
    _eventually(lambda: anonymous.get("/v1/models").status_code == 401)

    admin = _login(front, "root", ADMIN_PASSWORD)
    assert admin.get("/auth/me").json()["role"] == "admin"

    # Sign-up waits for approval.
    signup = anonymous.post("/auth/register", json={"username": "bob", "password": BOB_PASSWORD})
    assert signup.status_code == 201 and signup.json()["pending_approval"] is True
    bob = _login(front, "bob", BOB_PASSWORD)
    assert bob.get("/auth/me").json()["role"] == "pending"
    waiting = bob.get("/v1/models")
    assert waiting.status_code == 403 and "approval" in waiting.json()["error"]["message"]

    bob_id = signup.json()["user"]["id"]
    assert admin.post(f"/admin/users/{bob_id}/approve").status_code == 200
    # Approval moved bob's token version on: his pending session has ended.
    assert bob.get("/v1/models").status_code == 401
    bob = _login(front, "bob", BOB_PASSWORD)
    assert bob.get("/v1/models").status_code == 200

    # A signed-in write needs the CSRF header; a user is not an admin.
    no_csrf = httpx.post(f"{front.base_url}/admin/keys", cookies=admin.cookies, json={"name": "x"})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]["message"]
    assert bob.get("/admin/users").status_code == 403

    # A key scoped to one model, with a rate.
    made = admin.post(
        "/admin/keys", json={"name": "ci", "user_id": bob_id, "models": ["tiny-a"], "rpm": 2}
    )
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert key.startswith("mlxm_") and made.json()["prefix"] == key[:12]
    assert key not in admin.get("/admin/keys").text

    assert _chat(front, key, "tiny-a").status_code == 200
    refused = _chat(front, key, "tiny-b")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    claude = anthropic.Anthropic(base_url=front.base_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        claude.messages.create(
            model="tiny-b", max_tokens=2, messages=[{"role": "user", "content": "Hi"}]
        )
    assert info.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert _chat(front, key, "tiny-a").status_code == 200
    limited = _chat(front, key, "tiny-a")  # the third in a minute
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    sdk = openai.OpenAI(base_url=f"{front.base_url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="tiny-a", **CHAT)  # type: ignore[call-overload]

    # Disabling bob ends his session and his key at once.
    assert admin.post(f"/admin/users/{bob_id}/disable").status_code == 200
    assert bob.get("/auth/me").status_code == 401
    assert _chat(front, key, "tiny-a").status_code == 401

    # Nothing secret in the server's log.
    log = front.log()
    for secret in (ADMIN_PASSWORD, BOB_PASSWORD, key, admin.cookies["mlxm_session"]):
        assert secret not in log


def test_local_only_keys_never_reach_an_upstream(front: ServerProcess) -> None:
    admin = _login(front, "root", ADMIN_PASSWORD)
    admin.post(
        "/admin/providers",
        json={"name": "cloud", "kind": "openai", "base_url": "https://api.openai.example/v1"},
    )
    admin.post(
        "/admin/routes",
        json={"pattern": "gpt-", "match": "prefix", "targets": [{"provider": "cloud"}]},
    )
    made = admin.post("/admin/keys", json={"name": "lo", "local_only": True}).json()
    refused = _chat(front, made["key"], "gpt-4o")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "local_only"
    assert _chat(front, made["key"], "tiny-a").status_code == 200


def test_rebinding_and_cross_site_posts_are_refused(front: ServerProcess) -> None:
    admin = _login(front, "root", ADMIN_PASSWORD)
    evil = admin.get("/admin/users", headers={"host": "evil.example"})
    assert evil.status_code == 403 and evil.json()["error"]["code"] == "host_not_allowed"
    form = httpx.post(
        f"{front.base_url}/admin/models/unload/tiny-a",
        headers={
            "origin": "http://evil.example",
            "content-type": "application/x-www-form-urlencoded",
        },
        cookies=admin.cookies,
        content=b"x=1",
    )
    assert form.status_code == 403 and form.json()["error"]["code"] == "origin_not_allowed"
    same = admin.get("/admin/users", headers={"origin": front.base_url})
    assert same.status_code == 200


def test_demotion_ends_an_admin_session_at_once(front: ServerProcess) -> None:
    admin = _login(front, "root", ADMIN_PASSWORD)
    made = admin.post(
        "/admin/users", json={"username": "carol", "password": "carols-password", "role": "admin"}
    )
    assert made.status_code == 201
    carol = _login(front, "carol", "carols-password")
    assert carol.get("/admin/users").status_code == 200
    assert (
        admin.put(f"/admin/users/{made.json()['id']}/role", json={"role": "user"}).status_code
        == 200
    )
    assert carol.get("/admin/users").status_code == 401  # the old session is gone
    carol = _login(front, "carol", "carols-password")
    assert carol.get("/admin/users").status_code == 403  # and the new one is a user's


def _eventually(check: Any, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_disabling_a_user_ends_their_open_stream(
    front: ServerProcess, tiny_model_dirs: dict[str, Path]
) -> None:
    admin = _login(front, "root", ADMIN_PASSWORD)
    made = admin.post("/admin/users", json={"username": "dave", "password": "daves-password"})
    dave_id = made.json()["id"]
    key = admin.post("/admin/keys", json={"name": "d", "user_id": dave_id}).json()["key"]
    body = {
        "model": "tiny-a",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1500,
        "stream": True,
        "logit_bias": no_end_tokens(tiny_model_dirs["llama"]),
    }
    headers = {"authorization": f"Bearer {key}"}
    started = time.monotonic()
    with httpx.stream(
        "POST", f"{front.base_url}/v1/chat/completions", json=body, headers=headers, timeout=60
    ) as reply:
        assert reply.status_code == 200, reply.read()
        lines = reply.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        assert admin.post(f"/admin/users/{dave_id}/disable").status_code == 200
        rest = list(lines)
    assert time.monotonic() - started < 30  # ended, not run to 1500 tokens
    errors = [line for line in rest if "session ended" in line]
    assert errors, rest[-3:]

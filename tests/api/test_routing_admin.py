"""Providers and routes administered live over HTTP, stored in the database, kept across a
restart, keys only as ciphertext; SQLite (the default) and a real PostgreSQL server.

The session's MLX Manager (SmolLM2) is the upstream; a second one, with no local model,
is administered: each change must apply to the next request with no restart.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import MODEL
from tests.fixtures.server import ServerProcess, free_port

BACKEND = "x-mlx-manager-backend"
SECRET = "sk-test-0123456789abcdefSECRET"


def _front(root: Path, data_dir: Path, *flags: str) -> ServerProcess:
    empty = root / "models"
    empty.mkdir(exist_ok=True)
    env = {"MLX_MANAGER_DATA_DIR": str(data_dir)}
    return ServerProcess("--model-dir", str(empty), *flags, env=env, log_dir=root).wait_ready()


def _ask(base_url: str, model: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 3,
            "temperature": 0,
        },
        timeout=120,
    )
    return response.status_code, dict(response.headers), response.json()


def _provider(name: str, kind: str, base_url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "base_url": base_url, **extra}


def _route(pattern: str, match: str, provider: str, **extra: Any) -> dict[str, Any]:
    return {
        "pattern": pattern,
        "match": match,
        "targets": [{"provider": provider, "model": MODEL}],
        **extra,
    }


@pytest.fixture(scope="module")
def front_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("admin-front")


@pytest.fixture(scope="module")
def front(front_root: Path) -> Iterator[ServerProcess]:
    process = _front(front_root, front_root / "data")
    try:
        yield process
    finally:
        process.stop()


def test_provider_and_route_apply_live_and_hide_the_key(
    server: ServerProcess, front: ServerProcess
) -> None:
    admin = httpx.Client(base_url=front.base_url, timeout=30)
    listed = admin.get("/admin/providers").json()
    assert [p["name"] for p in listed["data"]] == ["local"]

    created = admin.post(
        "/admin/providers",
        json=_provider("mm", "openai_compatible", f"{server.base_url}/v1", api_key=SECRET),
    )
    assert created.status_code == 201, created.text
    assert SECRET not in created.text
    assert created.json()["api_key_hint"] == "…" + SECRET[-4:]
    assert created.json()["api_key_set"] is True

    status, headers, _ = _ask(front.base_url, "live-a")
    assert status == 404  # no rule yet: the local pool, which has no such model

    route = admin.post("/admin/routes", json=_route("live-", "prefix", "mm"))
    assert route.status_code == 201, route.text
    status, headers, body = _ask(front.base_url, "live-a")
    assert status == 200, body
    assert headers[BACKEND] == f"mm/{MODEL}"
    assert body["choices"][0]["message"]["content"]

    explained = admin.get("/admin/routes/explain", params={"model": "live-a"}).json()
    assert explained["rule"]["match"] == "prefix"
    assert explained["chain"][0]["provider"] == "mm"

    # Swap the target to the Anthropic dialect of the same upstream: the next request uses it.
    admin.post("/admin/providers", json=_provider("mm-anth", "anthropic", server.base_url))
    replaced = admin.put(
        f"/admin/routes/{route.json()['id']}", json=_route("live-", "prefix", "mm-anth")
    )
    assert replaced.status_code == 200, replaced.text
    status, headers, _ = _ask(front.base_url, "live-b")
    assert (status, headers[BACKEND]) == (200, f"mm-anth/{MODEL}")

    everything = admin.get("/admin/providers").text + admin.get("/admin/routes").text
    assert SECRET not in everything
    assert SECRET not in front.log()


def test_bad_writes_are_refused_in_the_error_shape(
    server: ServerProcess, front: ServerProcess
) -> None:
    admin = httpx.Client(base_url=front.base_url, timeout=30)
    unknown = admin.post("/admin/routes", json=_route("x-", "prefix", "nobody"))
    assert unknown.status_code == 400
    assert "unknown provider 'nobody'" in unknown.json()["error"]["message"]

    bad_regex = admin.post("/admin/routes", json=_route("(a)\\1", "regex", "local"))
    assert bad_regex.status_code == 400
    assert "RE2" in bad_regex.json()["error"]["message"]

    admin.post("/admin/routes", json=_route("twice", "exact", "local"))
    twice = admin.post("/admin/routes", json=_route("twice", "exact", "local"))
    assert twice.status_code == 400 and "twice" in twice.json()["error"]["message"]

    first = admin.post("/admin/providers", json=_provider("dup", "openai", f"{server.base_url}/v1"))
    assert first.status_code == 201
    dup = admin.post("/admin/providers", json=_provider("dup", "openai", f"{server.base_url}/v1"))
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "conflict"

    local = admin.put("/admin/providers/local", json=_provider("local", "openai", "http://x"))
    assert local.status_code in (400, 409)

    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    unreachable = admin.post(
        "/admin/providers", params={"check": "true"}, json=_provider("gone", "openai", nowhere)
    )
    assert unreachable.status_code == 400
    assert unreachable.json()["error"]["code"] == "provider_unreachable"
    assert admin.get("/admin/providers/gone").status_code == 404  # nothing stored

    reachable = admin.post(
        "/admin/providers",
        params={"check": "true"},
        json=_provider("here", "openai_compatible", f"{server.base_url}/v1"),
    )
    assert reachable.status_code == 201, reachable.text
    assert admin.post("/admin/providers/here/check").json()["reachable"] is True

    used = admin.post("/admin/routes", json=_route("uses-here", "exact", "here"))
    in_use = admin.delete("/admin/providers/here")
    assert in_use.status_code == 409 and "uses-here" in in_use.json()["error"]["message"]
    assert admin.delete(f"/admin/routes/{used.json()['id']}").status_code == 204
    assert admin.delete("/admin/providers/here").status_code == 204
    assert admin.get("/admin/providers/here").status_code == 404

    extra = admin.post("/admin/routes", json={**_route("y", "exact", "local"), "colour": "red"})
    assert extra.status_code == 400


def test_a_stream_keeps_the_route_it_started_with(
    server: ServerProcess, front: ServerProcess
) -> None:
    admin = httpx.Client(base_url=front.base_url, timeout=30)
    admin.post(
        "/admin/providers", json=_provider("s1", "openai_compatible", f"{server.base_url}/v1")
    )
    admin.post("/admin/providers", json=_provider("s2", "anthropic", server.base_url))
    route = admin.post("/admin/routes", json=_route("switching", "exact", "s1")).json()
    oa = openai.OpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0, timeout=120)
    raw = oa.chat.completions.with_raw_response.create(
        model="switching",
        messages=[{"role": "user", "content": "Count to twenty."}],
        max_tokens=24,
        temperature=0,
        stream=True,
    )
    chunks = iter(raw.parse())
    first = next(chunks)
    changed = threading.Event()

    def change() -> None:
        admin.put(f"/admin/routes/{route['id']}", json=_route("switching", "exact", "s2"))
        admin.delete("/admin/providers/s1")  # retired: its client must outlive this stream
        changed.set()

    threading.Thread(target=change).start()
    assert changed.wait(30)
    rest = list(chunks)
    assert raw.headers[BACKEND] == f"s1/{MODEL}"
    reasons = [c.choices[0].finish_reason for c in [first, *rest] if c.choices]
    assert reasons[-1] in ("length", "stop")
    _, headers, _ = _ask(front.base_url, "switching")
    assert headers[BACKEND] == f"s2/{MODEL}"


def test_restart_keeps_everything_and_the_file_holds_only_ciphertext(
    server: ServerProcess, front_root: Path
) -> None:
    root = front_root / "restart"
    root.mkdir()
    data = root / "data"
    first = _front(root, data)
    try:
        admin = httpx.Client(base_url=first.base_url, timeout=30)
        admin.post(
            "/admin/providers",
            json=_provider("kept", "anthropic", server.base_url, api_key=SECRET),
        )
        admin.post("/admin/routes", json=_route("kept-[0-9]+", "regex", "kept", priority=5))
    finally:
        first.stop()
    database = (data / "mlx-manager.db").read_bytes()
    wal = data / "mlx-manager.db-wal"
    stored = database + (wal.read_bytes() if wal.exists() else b"")
    assert SECRET.encode() not in stored
    assert b"mlxm1:" in stored  # the ciphertext token
    assert (data / "secret.key").stat().st_mode & 0o077 == 0
    with sqlite3.connect(data / "mlx-manager.db") as connection:
        changes = connection.execute("SELECT actor, action, target FROM admin_changes").fetchall()
    assert changes == [("anonymous", "provider.create", "kept"), ("anonymous", "route.create", "1")]

    second = _front(root, data)
    try:
        admin = httpx.Client(base_url=second.base_url, timeout=30)
        providers = {p["name"]: p for p in admin.get("/admin/providers").json()["data"]}
        assert providers["kept"]["api_key_hint"] == "…" + SECRET[-4:]
        routes = admin.get("/admin/routes").json()["data"]
        assert [(r["pattern"], r["priority"]) for r in routes] == [("kept-[0-9]+", 5)]
        status, headers, _ = _ask(second.base_url, "kept-7")
        assert (status, headers[BACKEND]) == (200, f"kept/{MODEL}")
        assert SECRET not in second.log()
    finally:
        second.stop()


def test_postgresql_store_keeps_routing_across_a_restart(
    server: ServerProcess, front_root: Path, postgres_url: str
) -> None:
    root = front_root / "postgres"
    root.mkdir()
    flags = ("--database-url", postgres_url)
    first = _front(root, root / "data", *flags)
    try:
        admin = httpx.Client(base_url=first.base_url, timeout=30)
        created = admin.post(
            "/admin/providers",
            json=_provider("pg", "openai_compatible", f"{server.base_url}/v1", api_key=SECRET),
        )
        assert created.status_code == 201, created.text
        admin.post("/admin/routes", json=_route("pg-model", "exact", "pg"))
    finally:
        first.stop()

    url = make_url(postgres_url)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database
    ) as connection:
        rows = connection.execute("SELECT api_key_ciphertext FROM providers").fetchall()
    assert len(rows) == 1 and rows[0][0].startswith("mlxm1:") and SECRET not in rows[0][0]

    second = _front(root, root / "data", *flags)
    try:
        status, headers, _ = _ask(second.base_url, "pg-model")
        assert (status, headers[BACKEND]) == (200, f"pg/{MODEL}")
    finally:
        second.stop()

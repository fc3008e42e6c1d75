"""Local failures fail over to an upstream, end to end, real HTTP on loopback.

A front MLX Manager serves the pool test models (tiny llamas m1, m2, m3, org/m4 and a corrupt
`broken`) with `--max-models 2 --pin m1`; its rules chain a local model to the session's
SmolLM2 server as an `openai_compatible` upstream. A corrupt model, a pool filled by pinned
models and a rule's load budget each send the request upstream (pool-aware routing starts no
load); a second front whose local first-token timeout cannot be met fails over too, and
answers a lone local request with a 504 in the caller's dialect.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.conftest import MODEL
from tests.fixtures.server import ServerProcess

BACKEND = "x-mlx-manager-backend"
UPSTREAM = f"mm/{MODEL}"
HI = [{"role": "user", "content": "Hi"}]


def _route(pattern: str, local: str, **extra: Any) -> dict[str, Any]:
    targets = [{"provider": "local", "model": local}, {"provider": "mm", "model": MODEL}]
    return {"pattern": pattern, "targets": targets, **extra}


def _front(upstream: ServerProcess, root: Path, *args: str, **config: Any) -> ServerProcess:
    config["providers"] = [
        {"name": "mm", "kind": "openai_compatible", "base_url": f"{upstream.base_url}/v1"}
    ]
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    # A small KV pool per model: the tiny models load in a blink.
    return ServerProcess("--config", str(path), "--kv-cache-gb", "0.05", *args, log_dir=root)


@pytest.fixture(scope="module")
def front(
    server: ServerProcess, pool_model_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    routes = [
        _route("corrupt", "broken"),
        _route("pool-full", "org/m4"),
        _route("budget-zero", "m3", local_load_budget_s=0),
        _route("resident", "m1", local_load_budget_s=0),
    ]
    root = tmp_path_factory.mktemp("local-failover")
    process = _front(
        server,
        root,
        *("--model-dir", str(pool_model_root), "--max-models", "2", "--pin", "m1"),
        routes=routes,
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def oa(front: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0, timeout=120)


def loaded(front: ServerProcess) -> set[str]:
    models = httpx.get(f"{front.base_url}/v1/models").json()["data"]
    return {m["id"] for m in models if m.get("loaded")}


def explain(front: ServerProcess, model: str) -> dict[str, Any]:
    return httpx.get(f"{front.base_url}/admin/routes/explain", params={"model": model}).json()


def test_a_corrupt_local_model_fails_over_to_the_upstream(
    front: ServerProcess, oa: openai.OpenAI
) -> None:
    raw = oa.chat.completions.with_raw_response.create(
        model="corrupt", messages=HI, max_tokens=3, stream=True
    )
    assert raw.headers[BACKEND] == UPSTREAM
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "route 'corrupt': local/broken failed (server)" in front.log()  # the load was tried


def test_a_pool_full_of_pinned_models_is_answered_upstream_without_a_load(
    front: ServerProcess,
) -> None:
    pinned = httpx.post(f"{front.base_url}/admin/models/load/m2", timeout=120)
    assert pinned.status_code == 200, pinned.text  # m1 and m2 pinned: max-models 2 is full
    try:
        local = explain(front, "pool-full")["chain"][0]
        assert local["residency"] == "blocked"
        assert "pinned: m1, m2" in local["residency_detail"]
        client = anthropic.Anthropic(
            base_url=front.base_url, api_key="x", max_retries=0, timeout=120
        )
        raw = client.messages.with_raw_response.create(model="pool-full", messages=HI, max_tokens=3)
        assert raw.headers[BACKEND] == UPSTREAM
        assert raw.parse().content[0].type == "text"
        assert loaded(front) == {"m1", "m2"}  # org/m4 was never loaded, nothing evicted
        assert explain(front, "pool-full")["chain"][0]["cooldown_s"] == 0.0
        assert "local/org/m4 failed (pool_budget)" in front.log()
    finally:
        httpx.post(f"{front.base_url}/admin/models/unload/m2", timeout=60)


def test_a_load_over_the_rules_budget_goes_upstream_and_loads_nothing(
    front: ServerProcess, oa: openai.OpenAI
) -> None:
    body = explain(front, "budget-zero")
    assert body["rule"]["local_load_budget_s"] == 0
    local, upstream = body["chain"]
    assert local["resident"] is False and local["residency"] == "fits"
    assert local["estimated_load_s"] > 0
    assert "resident" not in upstream
    raw = oa.chat.completions.with_raw_response.create(
        model="budget-zero", messages=HI, max_tokens=3
    )
    assert raw.headers[BACKEND] == UPSTREAM and raw.parse().choices[0].message.content
    assert "m3" not in loaded(front)
    status = httpx.get(f"{front.base_url}/admin/models/status").json()
    assert "m3" not in {m["id"] for m in status["models"]}
    assert "local/m3 failed (pool_budget)" in front.log()


def test_a_resident_model_is_served_locally_whatever_the_budget(
    front: ServerProcess, oa: openai.OpenAI
) -> None:
    assert explain(front, "resident")["chain"][0]["resident"] is True
    raw = oa.chat.completions.with_raw_response.create(model="resident", messages=HI, max_tokens=2)
    assert raw.headers[BACKEND] == "local/m1"
    usage = raw.parse().usage
    assert usage is not None and usage.completion_tokens > 0


# --- local timeouts ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient(
    server: ServerProcess,
    tiny_model_dirs: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A front whose local first-token deadline (a microsecond) no generation can meet."""
    root = tmp_path_factory.mktemp("local-timeouts")
    process = _front(
        server,
        root,
        *("--model", f"m1={tiny_model_dirs['llama']}"),
        routes=[_route("slow-local", "m1")],
        local_timeouts={"first_token_s": 0.000001},
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def test_a_local_first_token_timeout_fails_over(impatient: ServerProcess) -> None:
    reply = httpx.post(
        f"{impatient.base_url}/v1/chat/completions",
        json={"model": "slow-local", "messages": HI, "max_tokens": 3},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers[BACKEND] == UPSTREAM
    assert "local/m1 failed (timeout)" in impatient.log()


def test_a_lone_local_timeout_is_a_504_in_each_dialect(impatient: ServerProcess) -> None:
    body = {"model": "m1", "messages": HI, "max_tokens": 3}
    openai_reply = httpx.post(f"{impatient.base_url}/v1/chat/completions", json=body, timeout=60)
    assert openai_reply.status_code == 504
    error = openai_reply.json()["error"]
    assert error["code"] == "local_timeout" and "first token" in error["message"]
    anthropic_reply = httpx.post(f"{impatient.base_url}/v1/messages", json=body, timeout=60)
    assert anthropic_reply.status_code == 504
    assert anthropic_reply.json()["type"] == "error"
    assert "first token" in anthropic_reply.json()["error"]["message"]

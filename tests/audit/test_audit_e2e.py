"""The audit log end to end, real HTTP on loopback, real answers.

On the session's server (SmolLM2): a whole and a streamed success through the OpenAI SDK,
one through the Anthropic SDK, a 400, and a client that leaves mid-stream. On a front
MLX Manager (no local model) routing to the session's server: a failover past a failing
upstream, an upstream that fails whole or mid-stream, then GET /admin/requests' filters,
pages and aggregates against what the rows say. Last, `kill -9`: every request that had
finished a flush interval earlier is in the SQLite file.
"""

from __future__ import annotations

import math
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.conftest import MODEL
from tests.fixtures.embeddings import MINILM
from tests.fixtures.fake_upstream import FakeUpstream
from tests.fixtures.server import ServerProcess

ASK = [{"role": "user", "content": "Name a colour."}]


def rid(label: str) -> str:
    return f"audit-{label}-{uuid.uuid4().hex[:12]}"


def rows_of(
    base_url: str, count: int = 1, timeout_s: float = 15, **params: Any
) -> list[dict[str, Any]]:
    """The rows the filters select, once there are `count` (rows are written in batches)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = httpx.get(f"{base_url}/admin/requests", params={"limit": 500, **params}, timeout=30)
        assert reply.status_code == 200, reply.text
        data: list[dict[str, Any]] = reply.json()["data"]
        if len(data) >= count:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(data)} of {count} audit rows for {params}")
        time.sleep(0.1)


def one_row(base_url: str, request_id: str) -> dict[str, Any]:
    (row,) = rows_of(base_url, request_id=request_id)
    return row


# --- the session's server: a real model -------------------------------------------------


def test_successes_whole_and_streamed(server: ServerProcess, client: openai.OpenAI) -> None:
    whole_id, stream_id = rid("whole"), rid("stream")
    whole = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=3,
        extra_headers={"x-request-id": whole_id},  # type: ignore[arg-type]
    )
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=ASK,  # type: ignore[arg-type]
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": stream_id},
        )
    )
    streamed_usage = next(c.usage for c in chunks if c.usage)
    for request_id, streamed, usage in (
        (whole_id, False, whole.usage),
        (stream_id, True, streamed_usage),
    ):
        row = one_row(server.base_url, request_id)
        assert usage is not None
        assert row["api"] == "openai.chat" and row["stream"] is streamed
        assert (row["status"], row["error"], row["aborted"]) == (200, None, False)
        assert (row["model"], row["served_model"], row["rule"]) == (MODEL, MODEL, None)
        assert (row["backend"], row["backend_type"], row["attempts"]) == ("local", "local", [])
        assert row["usage"]["prompt_tokens"] == usage.prompt_tokens
        assert row["usage"]["completion_tokens"] == usage.completion_tokens
        assert 0 < row["ttft_ms"] <= row["latency_ms"]
        assert row["first_token_at"] <= row["ended_at"]
        assert row["data_left_machine"] is False and row["prompt"] is None
        assert (row["user_id"], row["key_id"]) == ("anonymous", None)


def test_anthropic_messages(server: ServerProcess, anthropic_client: anthropic.Anthropic) -> None:
    request_id = rid("anthropic")
    message = anthropic_client.messages.create(
        model=MODEL,
        max_tokens=3,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"x-request-id": request_id},
    )
    row = one_row(server.base_url, request_id)
    assert (row["api"], row["status"], row["backend"]) == ("anthropic.messages", 200, "local")
    assert row["usage"]["completion_tokens"] == message.usage.output_tokens


@pytest.mark.parametrize(
    ("path", "body", "api"),
    [
        ("/v1/completions", {"prompt": "Once upon", "max_tokens": 2}, "openai.completions"),
        ("/v1/responses", {"input": "Hi", "max_output_tokens": 2}, "openai.responses"),
    ],
)
def test_every_generating_api_is_recorded(
    server: ServerProcess, path: str, body: dict[str, Any], api: str
) -> None:
    request_id = rid(api)
    reply = httpx.post(
        f"{server.base_url}{path}",
        json={"model": MODEL, **body},
        headers={"x-request-id": request_id},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    row = one_row(server.base_url, request_id)
    assert (row["api"], row["status"], row["backend"], row["model"]) == (api, 200, "local", MODEL)
    assert row["usage"]["completion_tokens"] == 2 and row["ttft_ms"] is not None


def test_embeddings_are_recorded(embeddings_server: ServerProcess) -> None:
    request_id = rid("embeddings")
    reply = httpx.post(
        f"{embeddings_server.base_url}/v1/embeddings",
        json={"model": MINILM, "input": ["a cat", "a dog"]},
        headers={"x-request-id": request_id},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    row = one_row(embeddings_server.base_url, request_id)
    assert (row["api"], row["status"], row["model"]) == ("openai.embeddings", 200, MINILM)
    assert row["backend"] == "local"
    assert row["usage"]["prompt_tokens"] == reply.json()["usage"]["prompt_tokens"]


def test_a_client_error(server: ServerProcess) -> None:
    request_id = rid("400")
    reply = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={"model": MODEL, "messages": ASK, "temperature": 9, "stream": True},
        headers={"x-request-id": request_id},
        timeout=30,
    )
    assert reply.status_code == 400
    row = one_row(server.base_url, request_id)
    assert (row["status"], row["error"]) == (400, reply.json()["error"]["code"])
    assert row["model"] == MODEL and row["stream"] is True  # read from the refused body
    assert row["backend"] is None and row["ttft_ms"] is None


def test_a_client_that_leaves_mid_stream(server: ServerProcess) -> None:
    request_id = rid("abort")
    body = {"model": MODEL, "messages": ASK, "max_tokens": 400, "stream": True, "seed": 1}
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/chat/completions",
        json=body,
        headers={"x-request-id": request_id},
        timeout=60,
    ) as reply:
        assert reply.status_code == 200
        data = 0
        for line in reply.iter_lines():
            data += line.startswith("data:")
            if data >= 3:
                break
    row = one_row(server.base_url, request_id)
    assert (row["status"], row["aborted"], row["error"]) == (499, True, None)
    assert row["stream"] is True and row["ttft_ms"] is not None
    assert 1 <= row["usage"]["completion_tokens"] < 400
    aborted = rows_of(server.base_url, request_id=request_id, status="aborted")
    assert [r["request_id"] for r in aborted] == [request_id]


# --- a front MLX Manager routing to the session's server ---------------------------------


def _front_config(server: ServerProcess, fake_upstream: FakeUpstream) -> dict[str, Any]:
    def provider(name: str, base_url: str, **timeouts: float) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name, "kind": "openai_compatible", "base_url": base_url}
        return {**entry, "timeouts": timeouts} if timeouts else entry

    def route(pattern: str, *targets: tuple[str, str]) -> dict[str, Any]:
        return {"pattern": pattern, "targets": [{"provider": p, "model": m} for p, m in targets]}

    return {
        "providers": [
            provider("mm", f"{server.base_url}/v1"),
            provider("broken", f"{fake_upstream.base_url}/500"),
            provider("slow", f"{fake_upstream.base_url}/slow", idle_s=1),
        ],
        "routes": [
            route("audit-up", ("mm", MODEL)),
            route("audit-chain", ("broken", "m"), ("mm", MODEL)),
            route("audit-dead", ("broken", "m")),
            route("audit-slow", ("slow", "m")),
        ],
        "failover_cooldown_failures": 100,  # every chain request tries the broken target
    }


def _start_front(root: Path, config: dict[str, Any], *flags: str) -> ServerProcess:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    empty = root / "models"
    empty.mkdir(exist_ok=True)
    return ServerProcess(
        "--config", str(path), "--model-dir", str(empty), *flags, log_dir=root
    ).wait_ready()


@pytest.fixture(scope="module")
def front(
    server: ServerProcess, fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = _start_front(
        tmp_path_factory.mktemp("audit-front"),
        _front_config(server, fake_upstream),
        "--audit-flush-ms",
        "100",
        "--audit-prompts",
    )
    try:
        yield process
    finally:
        process.stop()


def _chat(base_url: str, model: str, request_id: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": ASK, "max_tokens": 3, "temperature": 0, "stream": stream}
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json=body,
        headers={"x-request-id": request_id},
        timeout=120,
    )


def test_a_failover_names_the_failed_target_and_the_one_that_answered(
    front: ServerProcess,
) -> None:
    request_id = rid("failover")
    reply = _chat(front.base_url, "audit-chain", request_id)
    assert reply.status_code == 200 and reply.headers["x-mlx-manager-backend"] == f"mm/{MODEL}"
    row = one_row(front.base_url, request_id)
    assert row["status"] == 200 and row["rule"] == "audit-chain"
    assert (row["backend"], row["backend_type"]) == ("mm", "openai_compatible")
    assert row["served_model"] == MODEL and row["model"] == "audit-chain"
    assert row["attempts"] == [{"target": "broken/m", "failure": "server", "status": 500}]
    assert row["data_left_machine"] is False  # loopback upstreams
    assert row["prompt"] == ASK[0]["content"]  # --audit-prompts
    assert row["usage"]["completion_tokens"] == reply.json()["usage"]["completion_tokens"]


def test_upstream_failures_whole_and_mid_stream(front: ServerProcess) -> None:
    dead_id, slow_id = rid("dead"), rid("slow")
    dead = _chat(front.base_url, "audit-dead", dead_id)
    assert dead.status_code >= 500
    slow = _chat(front.base_url, "audit-slow", slow_id, stream=True)
    assert slow.status_code == 200 and "upstream_timeout" in slow.text  # an error event
    row = one_row(front.base_url, dead_id)
    assert (row["status"], row["error"]) == (dead.status_code, dead.json()["error"]["code"])
    assert row["backend"] == "broken" and row["attempts"] == []  # one target: no failover
    row = one_row(front.base_url, slow_id)
    assert (row["status"], row["error"]) == (504, "upstream_timeout")  # after the 200
    assert row["ttft_ms"] is not None and row["ttft_ms"] < row["latency_ms"]


def _nearest(values: list[int], percent: int) -> int | None:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1] if ordered else None


def test_filters_pages_and_aggregates_say_what_the_rows_say(front: ServerProcess) -> None:
    for n in range(2):
        assert _chat(front.base_url, "audit-up", rid(f"up{n}"), stream=bool(n)).status_code == 200
    bad = httpx.post(
        f"{front.base_url}/v1/chat/completions", json={"model": "audit-up"}, timeout=30
    )
    assert bad.status_code == 400
    url = f"{front.base_url}/admin/requests"
    everything = rows_of(front.base_url, 3, model="audit-up")  # both successes and the 400
    every = rows_of(front.base_url, len(everything))
    assert [r["arrived_at"] for r in every] == sorted(
        (r["arrived_at"] for r in every), reverse=True
    )

    # each filter selects exactly the rows that say so
    for params, keep in (
        ({"model": "audit-up"}, lambda r: r["model"] == "audit-up"),
        ({"model": MODEL}, lambda r: r["served_model"] == MODEL),
        ({"backend": "mm"}, lambda r: r["backend"] == "mm"),
        ({"backend": "broken"}, lambda r: r["backend"] == "broken"),
        ({"status": "200"}, lambda r: r["status"] == 200),
        ({"status": "4xx"}, lambda r: 400 <= r["status"] < 500),
        ({"status": "error"}, lambda r: r["status"] >= 400 and r["status"] != 499),
        ({"user": "anonymous"}, lambda r: r["user_id"] == "anonymous"),
        ({"key": "none"}, lambda r: False),
        ({"since": every[1]["arrived_at"]}, lambda r: r["arrived_at"] >= every[1]["arrived_at"]),
        ({"until": every[1]["arrived_at"]}, lambda r: r["arrived_at"] < every[1]["arrived_at"]),
    ):
        reply = httpx.get(url, params={**params, "limit": 500}, timeout=30).json()
        expected = [r for r in every if keep(r)]
        assert [r["id"] for r in reply["data"]] == [r["id"] for r in expected], params
        aggregates = reply["aggregates"]
        latencies = [r["latency_ms"] for r in expected]
        ttfts = [r["ttft_ms"] for r in expected if r["ttft_ms"] is not None]
        errors = [r for r in expected if r["status"] >= 400 and r["status"] != 499]
        assert aggregates == {
            "count": len(expected),
            "errors": len(errors),
            "aborted": sum(r["aborted"] for r in expected),
            "error_rate": round(len(errors) / len(expected), 4) if expected else None,
            "latency_ms": {"p50": _nearest(latencies, 50), "p95": _nearest(latencies, 95)},
            "ttft_ms": {"p50": _nearest(ttfts, 50), "p95": _nearest(ttfts, 95)},
            "prompt_tokens": sum(r["usage"]["prompt_tokens"] or 0 for r in expected),
            "completion_tokens": sum(r["usage"]["completion_tokens"] or 0 for r in expected),
            "cached_tokens": sum(r["usage"]["cached_tokens"] or 0 for r in expected),
        }, params

    # pages of two, cursor to cursor, give the same rows once each
    paged: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "aggregates": "false"}
        if cursor:
            params["cursor"] = cursor
        reply = httpx.get(url, params=params, timeout=30).json()
        assert "aggregates" not in reply
        paged += [r["id"] for r in reply["data"]]
        cursor = reply["next_cursor"]
        assert reply["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert paged[: len(every)] == [r["id"] for r in every]


# --- kill -9 --------------------------------------------------------------------------


def test_finished_requests_survive_kill_9(
    server: ServerProcess, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    process = _start_front(
        tmp_path, _front_config(server, fake_upstream), "--audit-flush-ms", "200"
    )
    try:
        finished = []
        for n in range(3):
            request_id = rid(f"k{n}")
            assert _chat(process.base_url, "audit-up", request_id, stream=n == 1).status_code == 200
            finished.append(request_id)
        refused = rid("k400")
        reply = httpx.post(
            f"{process.base_url}/v1/chat/completions",
            json={"model": "audit-up", "messages": []},
            headers={"x-request-id": refused},
            timeout=30,
        )
        assert reply.status_code == 400
        finished.append(refused)
        time.sleep(1.0)  # five flush intervals
        process.process.kill()  # SIGKILL: no shutdown, no final flush
        process.process.wait(timeout=10)
    finally:
        process.stop()
    database = process.data_dir / "mlx-manager.db"
    with sqlite3.connect(database) as connection:  # recovers the WAL, as a restart would
        stored = dict(connection.execute("SELECT request_id, status FROM audit_requests"))
    assert {request_id: stored.get(request_id) for request_id in finished} == {
        **{request_id: 200 for request_id in finished[:3]},
        refused: 400,
    }

"""One model sharded over two processes (ring backend on loopback), served over HTTP by rank 0.

The tiny llama (4 heads, 2 KV heads, hidden 64) is split in two by mlx-lm's `Model.shard`:
greedy replies must equal the same model served by one process, token for token and logprob
for logprob; a client that disconnects is aborted on both ranks; killing rank 1 ends rank 0's
open streams with an error and turns the server to 503.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.server import ServerProcess
from tests.fixtures.server_group import ServerGroup
from tests.fixtures.tiny_models import build_tiny_model, no_end_tokens

ARGS = ("--kv-cache-gb", "0.01", "--block-size", "16")
PROMPTS = (
    "What is the capital of France?",
    "Count from one to ten, please.",
    "def main():\n    print('hello world')",
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles",
)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model("llama", tmp_path_factory.mktemp("sharded") / "llama")


@pytest.fixture(scope="module")
def group(llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerGroup]:
    log_dir = tmp_path_factory.mktemp("group")
    servers = ServerGroup("--model", str(llama_dir), *ARGS, ranks=2, log_dir=log_dir)
    try:
        yield servers.wait_ready()
    finally:
        codes = servers.stop()
    assert codes == [0], "rank 1 exits cleanly when rank 0 stops"


@pytest.fixture(scope="module")
def single(llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess("--model", str(llama_dir), *ARGS, log_dir=tmp_path_factory.mktemp("one"))
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def _body(llama_dir: Path, prompt: str, max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": "llama",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "logprobs": True,
        "logit_bias": no_end_tokens(llama_dir),  # random weights: never end early
        **extra,
    }


def _greedy(base_url: str, body: dict[str, Any]) -> list[tuple[str, float]]:
    reply = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    content = reply.json()["choices"][0]["logprobs"]["content"]
    return [(item["token"], item["logprob"]) for item in content]


def _same(sharded: list[tuple[str, float]], whole: list[tuple[str, float]]) -> None:
    assert [t for t, _ in sharded] == [t for t, _ in whole]
    # The all-reduce sums the halves in another order than one matmul: float32 rounding only.
    for (_, a), (_, b) in zip(sharded, whole, strict=True):
        assert a == pytest.approx(b, abs=1e-3)


def test_greedy_replies_equal_one_process_token_for_token(
    group: ServerGroup, single: ServerProcess, llama_dir: Path
) -> None:
    bodies = [_body(llama_dir, prompt, 8) for prompt in PROMPTS]
    # One at a time, then all at once (batched decodes, prefills of different lengths).
    alone = [_greedy(group.leader.base_url, body) for body in bodies]
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(lambda b: _greedy(group.leader.base_url, b), bodies))
        reference = list(pool.map(lambda b: _greedy(single.base_url, b), bodies))
    for sharded_alone, sharded_together, whole in zip(alone, together, reference, strict=True):
        assert len(whole) == 8
        _same(sharded_alone, whole)
        _same(sharded_together, whole)
    # The second round hit the prefix cache on both ranks: still the same replies.
    assert "0 sequence(s), 0 KV block(s) held" in group.followers[0].log()


def test_status_shows_one_resident_model_over_two_ranks(group: ServerGroup) -> None:
    status = httpx.get(f"{group.leader.base_url}/admin/models/status", timeout=10).json()
    (model,) = status["models"]
    assert model["id"] == "llama" and model["pinned"] and model["ranks"] == 2
    own, other = model["rank_bytes"]
    assert own == model["total_bytes"] and other == own  # equal shards, equal KV pools
    unload = httpx.post(f"{group.leader.base_url}/admin/models/unload/llama", timeout=10)
    assert unload.status_code == 409 and unload.json()["error"]["code"] == "model_sharded"


def _stream_some(base_url: str, body: dict[str, Any], chunks: int) -> None:
    """Read `chunks` streamed chunks, then drop the connection."""
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{base_url}/v1/chat/completions", json=body) as reply,
    ):
        assert reply.status_code == 200
        seen = 0
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                seen += 1
                if seen >= chunks:
                    return


def test_a_disconnect_aborts_on_both_ranks(group: ServerGroup, llama_dir: Path) -> None:
    body = _body(llama_dir, "Tell me a very long story.", 1500, stream=True)
    _stream_some(group.leader.base_url, body, chunks=4)
    log = group.wait_follower_log("ended (abort); 0 sequence(s), 0 KV block(s) held")
    assert "ended (abort)" in log
    deadline = time.monotonic() + 10
    while True:  # rank 0 freed the sequence too
        stats = httpx.get(f"{group.leader.base_url}/v1/queue/stats", timeout=10).json()
        if (stats["running"] == 0 and stats["kv_blocks_used"] == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stats["running"] == 0 and stats["kv_blocks_used"] == 0 and stats["aborted_requests"]


def test_killing_rank_1_ends_open_streams_with_an_error_then_503(
    llama_dir: Path, tmp_path: Path
) -> None:
    servers = ServerGroup("--model", str(llama_dir), *ARGS, ranks=2, log_dir=tmp_path)
    try:
        servers.wait_ready()
        url = servers.leader.base_url
        body = _body(llama_dir, "Tell me a very long story.", 1500, stream=True)
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", f"{url}/v1/chat/completions", json=body) as reply,
        ):
            lines = reply.iter_lines()
            for line in lines:
                if line.startswith("data: {"):
                    break  # generating
            servers.followers[0].process.send_signal(signal.SIGKILL)
            started = time.monotonic()
            # It ends with an error event, not a hang (the read timeout is 60 s).
            rest = [line for line in lines if line]
        assert time.monotonic() - started < 30
        assert rest[-1] == "data: [DONE]", rest[-3:]
        error = json.loads(rest[-2][6:])["error"]
        assert error["code"] == "distributed_group_lost", error
        assert "rank 1" in error["message"]
        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 503 and "rank 1" in health.json()["error"]
        again = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False})
        assert again.status_code == 503 and again.headers["Retry-After"]
        assert again.json()["error"]["code"] == "engine_unavailable"
    finally:
        servers.stop()

"""A client that disconnects stops its generation (streamed and not)."""

from __future__ import annotations

import contextlib
import time

import httpx

from tests.conftest import MODEL
from tests.fixtures.server import ServerProcess

LONG = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Write a very long essay."}],
    "max_tokens": 2000,
    "temperature": 0.8,
    "seed": 1,
}


def _stats(server: ServerProcess) -> dict[str, int]:
    return httpx.get(f"{server.base_url}/v1/queue/stats").json()  # type: ignore[no-any-return]


def _wait_idle(server: ServerProcess, timeout_s: float = 20) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = _stats(server)
        if stats["running"] == 0 and stats["waiting"] == 0:
            return stats
        time.sleep(0.1)
    raise AssertionError(f"engine still busy: {stats}")


def test_stream_disconnect_aborts(server: ServerProcess) -> None:
    before = _wait_idle(server)
    with httpx.stream(
        "POST", f"{server.base_url}/v1/chat/completions", json={**LONG, "stream": True}, timeout=60
    ) as reply:
        data: list[str] = []
        for line in reply.iter_lines():
            if line.startswith("data:"):
                data.append(line)
            if len(data) >= 4:
                break
    after = _wait_idle(server)
    assert after["aborted_requests"] == before["aborted_requests"] + 1
    generated = after["generated_tokens"] - before["generated_tokens"]
    assert generated < 200, f"generation kept running after disconnect ({generated} tokens)"


def test_non_streaming_disconnect_aborts(server: ServerProcess) -> None:
    before = _wait_idle(server)
    with contextlib.suppress(httpx.ReadTimeout):
        httpx.post(f"{server.base_url}/v1/chat/completions", json=LONG, timeout=2.0)
    after = _wait_idle(server)
    assert after["aborted_requests"] == before["aborted_requests"] + 1
    assert after["generated_tokens"] - before["generated_tokens"] < 200

"""--max-waiting-requests holds under a burst: a slot is booked before the request awaits anything."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import ServerProcess
from tests.fixtures.tiny_models import no_end_tokens

MAX_WAITING = 8
BURST = 64


@pytest.fixture(scope="module")
def narrow(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "--model",
        f"tiny={tiny_model_dirs['llama']}",
        "--max-waiting-requests",
        str(MAX_WAITING),
        "--max-num-seqs",
        "1",
        log_dir=tmp_path_factory.mktemp("narrow"),
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


SAY = [{"role": "user", "content": "Say something long."}]


@contextlib.asynccontextmanager
async def _one_running(
    base_url: str, model_dir: Path, connections: int
) -> AsyncIterator[httpx.AsyncClient]:
    """A client, and a long stream holding the one sequence slot (--max-num-seqs 1) while the
    block runs."""
    long = {
        "model": "tiny",
        "max_tokens": 1900,
        "stream": True,
        "logit_bias": no_end_tokens(model_dir),
        "messages": SAY,
    }
    limits = httpx.Limits(max_connections=connections)
    await _until_idle(base_url)  # an earlier test's stream may still be ending
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as http,
        http.stream("POST", "/v1/chat/completions", json=long) as running,
    ):
        data = (line async for line in running.aiter_lines() if line.startswith("data:"))
        await anext(data)  # the role chunk, sent before any token
        await anext(data)  # its first token: it is running
        yield http


async def _until_idle(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for _ in range(600):
            stats = (await http.get("/v1/queue/stats")).json()
            if stats["running"] == stats["waiting"] == 0:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"the engine never went idle: {stats}")


async def _burst(base_url: str, model_dir: Path) -> list[httpx.Response]:
    # The one sequence slot (--max-num-seqs 1) stays busy for the whole burst, so no
    # request of the burst can start: each one either waits or is shed.
    async with _one_running(base_url, model_dir, BURST + 1) as http:
        # Open every connection first, so the requests themselves arrive together.
        await asyncio.gather(*(http.get("/health") for _ in range(BURST)))
        # A longer prompt widens the time between arrival and the scheduler's queue.
        prompt = [{"role": "user", "content": "word " * 600}]
        short = {"model": "tiny", "max_tokens": 1, "messages": prompt}
        return await asyncio.gather(
            *(http.post("/v1/chat/completions", json=short) for _ in range(BURST))
        )


@pytest.mark.timeout(240)
def test_a_burst_is_shed_beyond_max_waiting_requests(
    narrow: ServerProcess, tiny_model_dirs: dict[str, Path]
) -> None:
    replies = asyncio.run(_burst(narrow.base_url, tiny_model_dirs["llama"]))
    statuses = [r.status_code for r in replies]
    shed = [r for r in replies if r.status_code == 503]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) == MAX_WAITING, statuses
    assert all(r.headers.get("retry-after") for r in shed)
    assert all(r.json()["error"]["code"] == "overloaded" for r in shed)


async def _count_while_full(base_url: str, model_dir: Path) -> httpx.Response:
    async with _one_running(base_url, model_dir, MAX_WAITING + 2) as http:
        short = {"model": "tiny", "max_tokens": 1, "messages": SAY}
        queued = [
            asyncio.create_task(http.post("/v1/chat/completions", json=short))
            for _ in range(MAX_WAITING)
        ]
        for _ in range(1200):  # until all of them wait in the scheduler
            stats = (await http.get("/v1/queue/stats")).json()
            if stats["waiting"] >= MAX_WAITING:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the queue never filled: {stats}")
        count = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}
        headers = {"anthropic-version": "2023-06-01"}
        reply = await http.post("/v1/messages/count_tokens", json=count, headers=headers)
        for task in queued:
            task.cancel()
        return reply


@pytest.mark.timeout(240)
def test_count_tokens_is_admitted_like_a_request(
    narrow: ServerProcess, tiny_model_dirs: dict[str, Path]
) -> None:
    """count_tokens tokenizes like a prefill's preparation: with the queue full it is shed."""
    reply = asyncio.run(_count_while_full(narrow.base_url, tiny_model_dirs["llama"]))
    assert reply.status_code == 529, reply.text
    assert reply.json()["error"]["type"] == "overloaded_error" and reply.headers["retry-after"]

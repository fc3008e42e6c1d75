"""The shared pacing of large request bodies (api/body_pacer.py), on a fake clock: small
bodies never wait, large ones are read at the configured rate after a burst, concurrent
bodies share the one rate, and the middleware paces what it reads."""

from __future__ import annotations

import asyncio

import pytest

from mlx_manager.api.body_pacer import MIB, BodyPacer
from mlx_manager.api.middleware import BodyLimitMiddleware


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _pacer(time: FakeTime, rate: float = 1 * MIB, burst: int = MIB) -> BodyPacer:
    return BodyPacer(rate, burst_bytes=burst, free_bytes=MIB, clock=time.clock, sleep=time.sleep)


async def _read(pacer: BodyPacer, size: int, chunk: int = 64 * 1024) -> None:
    done = 0
    while done < size:
        piece = min(chunk, size - done)
        await pacer.pace(done, piece)
        done += piece


def test_bodies_under_the_free_size_never_wait() -> None:
    time = FakeTime()
    pacer = _pacer(time, burst=0)
    for _ in range(50):
        asyncio.run(_read(pacer, MIB))
    assert time.slept == []


def test_a_large_body_is_read_at_the_rate_after_the_burst() -> None:
    time = FakeTime()
    asyncio.run(_read(_pacer(time), 6 * MIB))
    # 5 MiB past the free first MiB, 1 MiB of burst: 4 MiB at 1 MiB/s.
    assert time.now == pytest.approx(4.0, abs=0.07)


def test_concurrent_large_bodies_share_the_one_rate() -> None:
    time = FakeTime()
    pacer = _pacer(time, burst=0)

    async def both() -> None:
        await asyncio.gather(_read(pacer, 3 * MIB), _read(pacer, 3 * MIB))

    asyncio.run(both())
    # 2 MiB charged each, 4 MiB at 1 MiB/s in all: both done after 4 s, not 2.
    assert time.now == pytest.approx(4.0, abs=0.07)


def test_the_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BodyPacer(0)


class CountingPacer(BodyPacer):
    def __init__(self) -> None:
        super().__init__(1.0)
        self.calls: list[tuple[int, int]] = []

    async def pace(self, read_before: int, chunk: int) -> None:
        self.calls.append((read_before, chunk))


def test_the_body_limit_middleware_paces_every_chunk() -> None:
    pacer = CountingPacer()
    seen: list[bytes] = []

    async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    pieces = [b"a" * 10, b"b" * 20, b"c" * 5]

    async def receive() -> dict:
        body = pieces.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pieces)}

    async def send(message: dict) -> None:
        pass

    middleware = BodyLimitMiddleware(app, limit=1000, pacer=pacer)  # type: ignore[arg-type]
    scope = {"type": "http", "path": "/v1/chat/completions", "headers": []}
    asyncio.run(middleware(scope, receive, send))  # type: ignore[arg-type]
    assert pacer.calls == [(0, 10), (10, 20), (30, 5)]
    assert seen == [b"a" * 10 + b"b" * 20 + b"c" * 5]

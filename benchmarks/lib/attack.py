"""Hostile clients in a process of their own: idle connections and giant prompts.

`Attack` starts a child process (spawn) that opens `idle` TCP connections to the server (half
send nothing, half send half a request line and stop: slowloris), then keeps `giants`
requests of a ~`giant_mib` MiB prompt in flight (each worker sends its next as soon as its
previous one is answered) until told to stop. It runs apart from the benchmark's own client
so that its work never delays the event loop that times the normal requests; on a shared CPU
it still competes with both for the cores, as a real attacker would.

On stop the child reports how many idle connections the server had closed (or answered) by
then and the giant requests' statuses and times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import resource
import socket
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.lib.stats import percentile

HALF_REQUEST_LINE = b"POST /v1/chat/compl"


def raise_nofile(needed: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to at least `needed` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        top = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def giant_chat_body(model: str, mib: float, max_tokens: int = 4) -> bytes:
    """A chat request whose one message is ~`mib` MiB of words (JSON, ASCII)."""
    words = " lighthouse keeper library"
    text = words * int(mib * 1024 * 1024 / len(words))
    body = {"model": model, "max_tokens": max_tokens, "stream": True}
    body["messages"] = [{"role": "user", "content": text}]
    return json.dumps(body).encode()


# ---------------------------------------------------------------- idle connections


def open_idle(host: str, port: int, n: int) -> list[socket.socket]:
    """`n` connections; the odd ones send half a request line. Blocking connects (the kernel
    completes them from the listen backlog even before the server accepts)."""
    socks = []
    for i in range(n):
        sock = socket.create_connection((host, port), timeout=30)
        if i % 2:
            sock.sendall(HALF_REQUEST_LINE)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def idle_state(socks: list[socket.socket]) -> dict[str, int]:
    """How many are still open and silent, were answered (bytes waiting), or were closed."""
    states: Counter[str] = Counter()
    for sock in socks:
        try:
            data = sock.recv(1, socket.MSG_PEEK)
            states["answered" if data else "closed"] += 1
        except BlockingIOError:
            states["open"] += 1
        except OSError:
            states["reset"] += 1
    return {"open": 0, **states}


# ---------------------------------------------------------------- giant prompts


@dataclass(slots=True)
class GiantResult:
    status: int | None
    elapsed_s: float
    error: str | None = None
    body: str = ""


async def send_giant(host: str, port: int, body: bytes) -> GiantResult:
    """One giant POST on its own connection; the reply's status and first bytes."""
    started = time.perf_counter()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(head + body)
        await writer.drain()
        raw = await reader.read()
        writer.close()
    except (ConnectionError, OSError) as e:
        return GiantResult(None, time.perf_counter() - started, f"{type(e).__name__}: {e}")
    elapsed = time.perf_counter() - started
    status_line = raw.split(b"\r\n", 1)[0].split(b" ")
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else None
    body_text = raw.partition(b"\r\n\r\n")[2][:200].decode(errors="replace")
    return GiantResult(status, elapsed, None if status else "bad_reply", body_text)


async def giant_loop(
    host: str, port: int, body: bytes, stop: Any, results: list[GiantResult]
) -> None:
    while not stop.is_set():
        results.append(await send_giant(host, port, body))


# ---------------------------------------------------------------- the child process


@dataclass(frozen=True, slots=True)
class AttackPlan:
    host: str
    port: int
    idle: int
    giants: int
    giant_mib: float
    model: str
    stop_timeout_s: float = 60.0  # for the giants in flight when told to stop


def _child(plan: AttackPlan, ready: Any, stop: Any, conn: Any) -> None:
    limit = raise_nofile(plan.idle + 256)
    started = time.perf_counter()
    socks = open_idle(plan.host, plan.port, plan.idle)
    opened_s = time.perf_counter() - started
    body = giant_chat_body(plan.model, plan.giant_mib)
    results: list[GiantResult] = []

    async def run() -> None:
        loops = [giant_loop(plan.host, plan.port, body, stop, results) for _ in range(plan.giants)]
        tasks = [asyncio.create_task(c) for c in loops]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=plan.stop_timeout_s)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(run())
    report = {
        "nofile_limit": list(limit),
        "idle_open_s": opened_s,
        "idle_at_stop": idle_state(socks),
        "giant_body_bytes": len(body),
        "giants": summarize_giants(results),
    }
    for sock in socks:
        sock.close()
    conn.send(report)


def summarize_giants(results: list[GiantResult]) -> dict[str, Any]:
    times = [r.elapsed_s for r in results]
    return {
        "sent": len(results),
        "statuses": dict(Counter(str(r.status) for r in results)),
        "errors": dict(Counter(r.error for r in results if r.error)),
        "elapsed_p50_s": percentile(times, 50),
        "elapsed_max_s": max(times, default=None),
        "first": asdict(results[0]) if results else None,
    }


class Attack:
    """The attacker child: `with Attack(plan) as attack:` waits until the idle connections
    are open and the giants under way; `attack.report` holds its report after the block."""

    def __init__(self, plan: AttackPlan, ready_timeout_s: float = 120.0) -> None:
        self.plan = plan
        self.ready_timeout_s = ready_timeout_s
        self.report: dict[str, Any] | None = None
        context = multiprocessing.get_context("spawn")
        self._ready, self._stop = context.Event(), context.Event()
        self._conn, child_conn = context.Pipe(duplex=False)
        self._proc = context.Process(
            target=_child, args=(plan, self._ready, self._stop, child_conn), daemon=True
        )

    def __enter__(self) -> Attack:
        self._proc.start()
        if not self._ready.wait(self.ready_timeout_s):
            self._end()
            raise RuntimeError(f"the attacker was not ready in {self.ready_timeout_s:.0f}s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        try:
            if self._conn.poll(self.plan.stop_timeout_s + 30):
                self.report = self._conn.recv()
        except EOFError:
            self.report = {"error": "the attacker process ended without a report"}
        self._end()

    def _end(self) -> None:
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

"""The HTTP layer protects itself: header size, slowloris timeouts, a connection cap.

Raw sockets against a real server, because HTTP clients will not send half a request.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.server import ServerProcess

KEY = "sk-limits"
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 50
SLACK = 3.0  # a loaded 2-core machine
DEFAULT_HEADER_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def guarded(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "--model",
        f"tiny={tiny_model_dirs['llama']}",
        "--api-key",
        KEY,
        "--header-timeout",
        str(HEADER_TIMEOUT),
        "--body-timeout",
        str(BODY_TIMEOUT),
        "--max-connections",
        str(MAX_CONNECTIONS),
        log_dir=tmp_path_factory.mktemp("limits"),
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def _connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_until_closed(sock: socket.socket, timeout_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took; raises on timeout."""
    started = time.monotonic()
    sock.settimeout(timeout_s)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic() - started


def _read_response(sock: socket.socket) -> bytes:
    """One Content-Length framed response, leaving the connection open."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(65536)
    return data


def _readable(sock: socket.socket, wait_s: float = 0.0) -> bool:
    return bool(select.select([sock], [], [], wait_s)[0])


def _models_ok(server: ServerProcess) -> None:
    reply = httpx.get(
        f"{server.base_url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    assert reply.status_code == 200, reply.text


@pytest.mark.timeout(120)
def test_huge_header_is_431_before_auth_without_buffering(guarded: ServerProcess) -> None:
    with _connect(guarded) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = 0
        while sent < 1024 * 1024 and not _readable(sock, 0.05):
            sock.sendall(b"a" * 16384)
            sent += 16384
        assert _readable(sock, 5), f"no answer after {sent} bytes of one header"
        # Answered long before the 1 MiB header was all sent: it was never buffered whole.
        assert sent <= DEFAULT_HEADER_LIMIT + 512 * 1024, f"answered only after {sent} bytes"
        reply, elapsed = _read_until_closed(sock, 5)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert elapsed < 2.0, f"closed {elapsed:.1f}s after the 431"
    _models_ok(guarded)


@pytest.mark.timeout(120)
def test_headers_under_the_limit_with_a_body_in_the_same_read_pass(guarded: ServerProcess) -> None:
    body = b'{"model": "tiny", "messages": "' + b"x" * 300_000 + b'"}'
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Type: application/json\r\n"
        b"X-Pad: " + b"p" * 40_000 + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with _connect(guarded) as sock:
        sock.sendall(head + body)  # one write: the server reads headers and body together
        reply, _ = _read_until_closed(sock, 30)
    assert reply.startswith(b"HTTP/1.1 400 "), reply[:300]  # the app judged it: not 431


@pytest.mark.timeout(60)
@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickled"])
def test_unfinished_headers_are_closed_with_408(guarded: ServerProcess, trickle: bool) -> None:
    with _connect(guarded) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # Slowloris trickles a header byte now and then: that must not extend the deadline.
        while trickle and not _readable(sock, 0.3):
            assert time.monotonic() - started < HEADER_TIMEOUT + SLACK, "still open"
            sock.sendall(b"X")
        try:
            reply, _ = _read_until_closed(sock, HEADER_TIMEOUT + SLACK)
        except TimeoutError:
            pytest.fail(f"half-sent headers still open after {HEADER_TIMEOUT + SLACK}s")
        elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert HEADER_TIMEOUT - 0.5 < elapsed < HEADER_TIMEOUT + SLACK, elapsed
    _models_ok(guarded)


@pytest.mark.timeout(60)
def test_keep_alive_idle_is_not_cut_by_the_header_timeout(guarded: ServerProcess) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with _connect(guarded) as sock:
        for _ in range(2):
            sock.sendall(request)
            assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
            # Idle between requests is --connection-idle-timeout's (5 s), not the header clock.
            time.sleep(HEADER_TIMEOUT + 0.5)


@pytest.mark.timeout(60)
def test_stalled_body_is_ended_with_408(guarded: ServerProcess) -> None:
    with _connect(guarded) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            + b'{"model": '
        )
        started = time.monotonic()
        try:
            reply, _ = _read_until_closed(sock, BODY_TIMEOUT + SLACK)
        except TimeoutError:
            pytest.fail(f"stalled body still open after {BODY_TIMEOUT + SLACK}s")
        elapsed = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    assert BODY_TIMEOUT - 0.5 < elapsed < BODY_TIMEOUT + SLACK, elapsed
    _models_ok(guarded)
    assert "Traceback" not in guarded.log()


def _still_open(sock: socket.socket) -> bool:
    return not _readable(sock)  # a closed (or answered) socket reads EOF (or data)


@pytest.mark.timeout(60)
def test_connection_cap_refuses_extras_and_spares_the_rest(guarded: ServerProcess) -> None:
    idle = [_connect(guarded) for _ in range(40)]
    extra: list[socket.socket] = []
    try:
        # Under the cap a normal client still gets in (and the idle ones are really open).
        assert httpx.get(f"{guarded.base_url}/health", timeout=10).status_code == 200
        assert all(_still_open(sock) for sock in idle), "idle sockets closed too early"
        extra = [_connect(guarded) for _ in range(20)]
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and sum(map(_readable, extra)) < 10:
            time.sleep(0.05)
        refused = [sock for sock in extra if _readable(sock)]
        assert len(refused) >= 10, f"{len(refused)} of 60 idle connections refused (cap 50)"
        for sock in refused:
            reply, elapsed = _read_until_closed(sock, 5)
            assert reply.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in reply.lower()
            assert elapsed < 1.0, f"refused connection closed only after {elapsed:.1f}s"
        assert all(_still_open(sock) for sock in idle), "the cap hurt established connections"
        # The idle ones die by the header timeout; then a normal request gets in again.
        time.sleep(HEADER_TIMEOUT + 1)
        assert sum(map(_still_open, idle)) == 0, "idle connections outlived the header timeout"
        _models_ok(guarded)
    finally:
        for sock in idle + extra:
            sock.close()


def _open_file_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no 'Max open files' line")


@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="needs /proc")
def test_default_cap_lets_a_client_in_past_2100_idle_connections(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    import resource

    wanted = 2100
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < wanted + 200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = ServerProcess("--model", f"tiny={tiny_model_dirs['llama']}", log_dir=tmp_path)
    idle: list[socket.socket] = []
    try:
        server.wait_ready()
        soft_limit, hard_limit = _open_file_limits(server.process.pid)
        # The server raised its soft limit to the hard one, which mlx_lm's import left alone.
        assert soft_limit == hard_limit >= hard, (soft_limit, hard_limit)
        idle = [_connect(server) for _ in range(wanted)]
        reply = httpx.get(f"{server.base_url}/health", timeout=10)
        assert reply.status_code == 200, reply.text
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_default_connection_cap_stays_below_the_fd_limit() -> None:
    from mlx_manager.api.http_server import connection_cap

    assert connection_cap(None, 20_000) == 10_000  # the default, well within the limit
    assert connection_cap(None, 1024) == 1024 - 256  # headroom for models and sockets
    assert connection_cap(None, 4096) == 4096 - 512
    assert connection_cap(None, None) == 10_000  # limit unknown
    assert connection_cap(50, 1024) == 50  # an explicit cap is the operator's call

"""uvicorn's access lines written from a thread (observability/logs.queue_access_log): the
same line, its request id taken where it was made, nothing lost at stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from uvicorn.logging import AccessFormatter

from mlx_manager.observability.logs import REQUEST_ID, RequestIdFilter, queue_access_log


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        name = threading.current_thread().name
        self.lines.append((self.format(record), getattr(record, "request_id", None), name))


@pytest.fixture
def access_logger() -> Iterator[logging.Logger]:
    access = logging.getLogger("uvicorn.access")
    saved = access.handlers[:], access.propagate, access.level
    yield access
    access.handlers[:], access.propagate = saved[0], saved[1]
    access.setLevel(saved[2])


def _log_a_request(access: logging.Logger) -> None:
    token = REQUEST_ID.set("req-7")
    try:  # uvicorn's call: its formatter unpacks these five args
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "POST", "/v1/x", "1.1", 200)
    finally:
        REQUEST_ID.reset(token)


def test_uvicorn_handler_gets_the_formatted_line_from_another_thread(
    access_logger: logging.Logger,
) -> None:
    capture = _Capture()
    capture.setFormatter(AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s"))
    capture.addFilter(RequestIdFilter())  # as on a root handler: must not overwrite
    access_logger.handlers[:] = [capture]
    access_logger.setLevel(logging.INFO)
    listener = queue_access_log()
    assert listener is not None
    _log_a_request(access_logger)
    listener.stop()  # writes what is queued
    assert len(capture.lines) == 1
    line, request_id, thread = capture.lines[0]
    assert "127.0.0.1:5" in line and "POST /v1/x HTTP/1.1" in line and "200" in line
    assert request_id == "req-7"
    assert thread != threading.current_thread().name


def test_propagated_lines_go_to_the_root_handlers(access_logger: logging.Logger) -> None:
    capture = _Capture()
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [capture]
    access_logger.handlers[:] = []
    access_logger.propagate = True
    access_logger.setLevel(logging.INFO)
    try:
        listener = queue_access_log()
        assert listener is not None
        _log_a_request(access_logger)
        listener.stop()
    finally:
        root.handlers[:] = saved
    assert [(c[0], c[1]) for c in capture.lines] == [
        ('127.0.0.1:5 - "POST /v1/x HTTP/1.1" 200', "req-7")
    ]


def test_no_queue_when_the_access_log_is_off(access_logger: logging.Logger) -> None:
    access_logger.setLevel(logging.WARNING)
    assert queue_access_log() is None

"""Log lines, as text or as JSON lines, each naming the request it belongs to.

The request id (the one echoed in `x-request-id`) is kept in a context variable that the
request-id middleware sets for the request's task; a logging filter copies it onto every record
made in that context, uvicorn's access line included. The JSON formatter is a few lines over
the stdlib (one object per line: time, level, logger, message, request_id, exception): a
dependency would add nothing here.
"""

from __future__ import annotations

import contextvars
import json
import logging
import queue
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mlx_manager_request_id", default=None
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log a line per call at INFO: httpx writes "HTTP Request: POST <upstream URL>
# ..." for every upstream request (a formatted line on the router's hot path, ~0.1 ms, which
# the access log and the audit log already cover). Kept at WARNING unless --log-level debug.
CHATTY_LOGGERS = ("httpx",)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):  # a queued record got it where it was made
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    """The root logger for the server: every line through one handler on stderr (uvicorn's
    loggers propagate to it when uvicorn is given no logging config of its own)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in CHATTY_LOGGERS:
        quiet = root.level > logging.DEBUG
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)


class _RecordAsItIs(QueueHandler):
    """Queues the record unformatted: uvicorn's access formatter reads its args."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def queue_access_log() -> QueueListener | None:
    """Write uvicorn's access lines from a thread; the listener to stop at exit (None: the
    access log is off).

    uvicorn logs a request's line in its send(), before the answer's head is written:
    formatting and writing it on the event loop delays every answer (~0.1 ms, a twentieth of
    a proxied request's overhead). Queued, the loop only makes the record (with its request
    id); the thread hands it to where it went before: uvicorn's own handler (text), else the
    root's (JSON lines, propagated)."""
    access = logging.getLogger("uvicorn.access")
    if not access.isEnabledFor(logging.INFO):
        return None
    targets = access.handlers[:] if access.handlers else logging.getLogger().handlers[:]
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    queued = _RecordAsItIs(records)
    queued.addFilter(RequestIdFilter())
    access.handlers[:] = [queued]
    access.propagate = False
    listener = QueueListener(records, *targets, respect_handler_level=True)
    listener.start()
    return listener

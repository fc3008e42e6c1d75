"""The uvicorn configuration: protocol guards, timeouts and a connection cap within the FD limit.

uvicorn's own `limit_concurrency` is left off: it refuses only after a request's headers are
complete and counts requests in flight too, so it neither stops idle connections nor leaves
established streams alone; the guarded protocol's cap does both. `backlog` keeps uvicorn's 2048:
connections waiting in the kernel cost no descriptor.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from sse_starlette.sse import AppStatus
from uvicorn.config import LOGGING_CONFIG

from mlx_manager.api.fd_limit import raise_fd_limit
from mlx_manager.config import ServerConfig

log = logging.getLogger(__name__)

# The default cap when the open-file limit allows more: each idle connection costs memory too.
DEFAULT_MAX_CONNECTIONS = 10_000
# Descriptors kept free for model files, the database, upstream sockets and logs.
MIN_FD_HEADROOM = 256


def connection_cap(requested: int | None, fd_limit: int | None) -> int:
    """`requested`, else the default clamped below the FD limit with headroom."""
    headroom = max(MIN_FD_HEADROOM, (fd_limit or 0) // 8)
    safe = DEFAULT_MAX_CONNECTIONS if fd_limit is None else max(16, fd_limit - headroom)
    if requested is None:
        return min(DEFAULT_MAX_CONNECTIONS, safe)
    if requested > safe:
        log.warning(
            "--max-connections %d leaves under %d of the %s open files for models and sockets",
            requested,
            headroom,
            fd_limit,
        )
    return requested


def http_protocol(config: ServerConfig, max_connections: int) -> type[asyncio.Protocol] | str:
    """The guarded httptools protocol; h11 (header limit only) where httptools is missing."""
    if importlib.util.find_spec("httptools") is None:
        log.warning("httptools is not installed: no header/body timeouts nor connection cap")
        return "h11"
    from mlx_manager.api.http_protocol import HttpLimits, guarded_protocol

    limits = HttpLimits(
        max_header_bytes=config.max_header_bytes,
        header_timeout_s=config.header_timeout,
        body_timeout_s=config.body_timeout,
        max_connections=max_connections,
    )
    return guarded_protocol(limits)


# After the drain window, what ending the open streams (with error events) may take before
# uvicorn cancels whatever is left (a client that stopped reading, say).
SHUTDOWN_GRACE_S = 5.0


class DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the app when shutdown begins.

    uvicorn stops accepting at once and waits for open requests; `on_shutdown` starts the
    app's drain window, after which the app ends its streams with error events. sse-starlette
    would otherwise cut every stream silently at the signal (a truncated answer that looks
    complete), so its automatic drain is turned off: the app's drain replaces it.
    """

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown
        AppStatus.disable_automatic_graceful_drain()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets=sockets)


def uvicorn_config(app: Any, config: ServerConfig) -> uvicorn.Config:
    fd_limit = raise_fd_limit()
    max_connections = connection_cap(config.max_connections, fd_limit)
    log.info(
        "HTTP limits: headers %d bytes, header timeout %gs, body timeout %gs, "
        "%d connections (open-file limit %s)",
        config.max_header_bytes,
        config.header_timeout,
        config.body_timeout,
        max_connections,
        fd_limit or "unknown",
    )
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        # JSON lines: uvicorn's loggers propagate to ours (one format, the request id on each
        # line); text keeps uvicorn's own look.
        log_config=None if config.log_format == "json" else LOGGING_CONFIG,
        http=http_protocol(config, max_connections),
        # Used by h11 only (the fallback); the guarded protocol enforces the same limit.
        h11_max_incomplete_event_size=config.max_header_bytes,
        timeout_keep_alive=config.connection_idle_timeout,
        timeout_graceful_shutdown=math.ceil(config.shutdown_timeout + SHUTDOWN_GRACE_S),
    )

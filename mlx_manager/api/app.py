"""The FastAPI application: middleware, error handlers, routers, and the runtime's lifetime."""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from mlx_manager.admin import ui_routes
from mlx_manager.api import (
    account_admin_routes,
    admin_routes,
    anthropic_routes,
    audio_routes,
    audit_routes,
    auth_routes,
    docs_routes,
    download_routes,
    embeddings_routes,
    metrics_routes,
    openai_routes,
    pool_routes,
    provider_routes,
    responses_routes,
    routing_routes,
    system_routes,
)
from mlx_manager.api.auth import AuthMiddleware, require_principal
from mlx_manager.api.body_pacer import BodyPacer
from mlx_manager.api.errors import install_error_handlers
from mlx_manager.api.giant_body import giant_body_screens
from mlx_manager.api.host_guard import LOOPBACK_NAMES, HostGuardMiddleware, allowed_host_names
from mlx_manager.api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from mlx_manager.api.unicode_guard import UnicodeGuardMiddleware
from mlx_manager.audit.middleware import AuditMiddleware
from mlx_manager.config import Settings
from mlx_manager.distributed.leader import GroupLeader
from mlx_manager.models.loaded import default_spec
from mlx_manager.models.sources import parse_model_spec
from mlx_manager.observability.trace_context import TraceContextMiddleware
from mlx_manager.observability.tracing import tracing_enabled
from mlx_manager.routing.body_bounds import BodyBounds
from mlx_manager.runtime import Runtime

log = logging.getLogger(__name__)


def _offer_setup(runtime: Runtime, host: str) -> None:
    """No administrator yet, and one is needed to get in (the server is closed, or bound off
    loopback where an open server answers nobody): print the one-time set-up token on the
    console, never into the log."""
    accounts = runtime.accounts
    token = accounts.setup_token
    if token is None or (accounts.open_mode and host in LOOPBACK_NAMES):
        return
    print(
        "mlx-manager: no administrator yet. Create one with `mlx-manager users create-admin`, "
        f'or POST /auth/setup with {{"token": "{token}", "username": …, '
        '"password": …}} (this token works once, until the server restarts).',
        file=sys.stderr,
        flush=True,
    )


def _body_bounds(app: FastAPI) -> BodyBounds | None:
    runtime = getattr(app.state, "runtime", None)  # None before the lifespan starts
    return runtime.body_bounds if runtime is not None else None


def _no_native_telemetry() -> dict[str, Any]:
    """FastAPI (0.165 on) traces and measures each request itself once a global OpenTelemetry
    provider is set (Logfire's): our own request spans and metrics cover requests, and its
    check alone costs ~1% of a pass-through's CPU. Older FastAPI has no such option."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(
    settings: Settings,
    on_fatal: Callable[[str], None] | None = None,
    group: GroupLeader | None = None,
) -> FastAPI:
    """Build the app. `on_fatal` is called if the startup models fail to load; `group`: rank
    0 of a distributed group that shards the model (`serve --distributed`)."""
    specs = [parse_model_spec(text) for text in settings.model]
    if not specs and not settings.model_dir:
        specs = [default_spec()]  # nothing configured: the embedded model

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("event loop: %s", type(asyncio.get_running_loop()).__module__)
        runtime = Runtime(settings, group)
        app.state.runtime = runtime
        try:
            await runtime.open_store()
        except Exception as exc:
            if on_fatal is None:
                await runtime.stop()
                raise
            log.error("%s", exc)
            on_fatal(str(exc))  # the server exits at once, with this reason
            try:
                yield
            finally:
                await runtime.stop()
            return
        _offer_setup(runtime, settings.host)
        loading = asyncio.create_task(_load(runtime))
        try:
            yield
        finally:
            loading.cancel()
            await runtime.stop()

    async def _load(runtime: Runtime) -> None:
        try:
            await runtime.start(specs)
        except Exception as exc:
            log.error("could not load the model(s): %s", exc)
            if on_fatal is not None:
                on_fatal(str(exc))

    # FastAPI's own /docs and /openapi.json would be open: ours are on a protected router.
    app = FastAPI(
        title="MLX Manager",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        **_no_native_telemetry(),
    )
    install_error_handlers(app)
    server = settings.server()
    # The generation routes first: a request is matched against the routes in order, and
    # these carry nearly every request (no path is shared, so the order changes no answer).
    generation = [
        openai_routes.router,
        anthropic_routes.router,
        responses_routes.router,
        embeddings_routes.router,
    ]
    public = [system_routes.public_router, auth_routes.public_router]
    if server.metrics_public:
        public.append(metrics_routes.router)
    protected = [
        system_routes.router,
        auth_routes.router,
        docs_routes.router,
        audio_routes.router,
        admin_routes.router,
        pool_routes.router,
        download_routes.router,
        routing_routes.router,
        provider_routes.router,
        account_admin_routes.router,
        audit_routes.router,
    ]
    if not server.metrics_public:
        protected.append(metrics_routes.router)
    deny_by_default = [Depends(require_principal)]  # the router carries the check
    for router in generation:
        app.include_router(router, dependencies=deny_by_default)
    for router in public:
        app.include_router(router)
    for router in protected:
        app.include_router(router, dependencies=deny_by_default)
    ui_routes.install(app)  # the web UI: its pages carry their own check (a login redirect)
    # Added last = outermost: the request id also marks 401 and 413 answers.
    app.state.audio_limits = audio_routes.audio_limits(server)
    app.add_middleware(UnicodeGuardMiddleware)  # inside the body limit: reads a bounded body
    app.add_middleware(
        BodyLimitMiddleware,
        limit=server.max_request_bytes,
        path_limits={audio_routes.TRANSCRIPTIONS_PATH: audio_routes.body_limit(server)},
        screens=giant_body_screens(lambda: _body_bounds(app)),
        pacer=BodyPacer(server.large_body_rate_mb * 1e6) if server.large_body_rate_mb else None,
    )
    app.add_middleware(AuthMiddleware, accounts=lambda: app.state.runtime.accounts)
    app.add_middleware(
        HostGuardMiddleware, allowed=allowed_host_names(server.host, server.allowed_hosts)
    )
    if tracing_enabled(settings.tracing()):  # a caller's traceparent: our spans join its trace
        app.add_middleware(TraceContextMiddleware)
    if settings.audit:  # outside auth and the body limit: a 401 or 413 gets its row too
        app.add_middleware(AuditMiddleware, sink=lambda: audit_routes.sink_of(app))
    app.add_middleware(RequestIdMiddleware)
    return app

"""The FastAPI application: middleware, error handlers, routers, and the runtime's lifetime."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mlx_manager.api import (
    admin_routes,
    anthropic_routes,
    audio_routes,
    embeddings_routes,
    metrics_routes,
    openai_routes,
    provider_routes,
    responses_routes,
    routing_routes,
    system_routes,
)
from mlx_manager.api.auth import OPEN_PATHS, ApiKeyMiddleware
from mlx_manager.api.errors import install_error_handlers
from mlx_manager.api.middleware import BodyLimitMiddleware, RequestIdMiddleware
from mlx_manager.api.unicode_guard import UnicodeGuardMiddleware
from mlx_manager.config import Settings
from mlx_manager.models.loaded import default_spec
from mlx_manager.models.sources import parse_model_spec
from mlx_manager.runtime import Runtime

log = logging.getLogger(__name__)


def create_app(settings: Settings, on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    """Build the app. `on_fatal` is called if the startup models fail to load."""
    specs = [parse_model_spec(text) for text in settings.model]
    if not specs and not settings.model_dir:
        specs = [default_spec()]  # nothing configured: the embedded model

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings)
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

    app = FastAPI(title="MLX Manager", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(system_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(openai_routes.router)
    app.include_router(responses_routes.router)
    app.include_router(embeddings_routes.router)
    app.include_router(anthropic_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(routing_routes.router)
    app.include_router(provider_routes.router)
    app.include_router(audio_routes.router)
    server = settings.server()
    # Added last = outermost: the request id also marks 401 and 413 answers.
    app.state.audio_limits = audio_routes.audio_limits(server)
    app.add_middleware(UnicodeGuardMiddleware)  # inside the body limit: reads a bounded body
    app.add_middleware(
        BodyLimitMiddleware,
        limit=server.max_request_bytes,
        path_limits={audio_routes.TRANSCRIPTIONS_PATH: audio_routes.body_limit(server)},
    )
    if server.api_key:
        open_paths = OPEN_PATHS | ({"/metrics"} if server.metrics_public else set())
        app.add_middleware(ApiKeyMiddleware, api_key=server.api_key, open_paths=open_paths)
    app.add_middleware(RequestIdMiddleware)
    return app

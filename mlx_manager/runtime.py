"""The composition root: Settings -> engine thread, model pool, services, generation seam.

Everything the API serves is built here, once, from its own slice of the settings; the routes
reach the parts through `app.state.runtime`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from mlx_manager.accounts.service import AccountService
from mlx_manager.admin.pool_limits import PoolLimits
from mlx_manager.audit.log import AuditLog
from mlx_manager.config import Settings
from mlx_manager.distributed.leader import GroupLeader
from mlx_manager.downloads.manager import DownloadManager
from mlx_manager.downloads.records import RecordFile
from mlx_manager.engine.commands import MlxMemory
from mlx_manager.engine.core import EngineSnapshot
from mlx_manager.engine.loop import EngineThread
from mlx_manager.errors import ErrorInfo, GroupLost, ServerShuttingDown, without_paths
from mlx_manager.frontend.admission import Admission
from mlx_manager.frontend.client import EngineClient
from mlx_manager.frontend.lifecycle import EngineState, Lifecycle
from mlx_manager.frontend.model_host import EngineModelHost
from mlx_manager.models.badges import BadgeCache
from mlx_manager.models.sources import ModelSpec
from mlx_manager.observability.registry import Metrics
from mlx_manager.observability.route_telemetry import RouteTelemetry
from mlx_manager.observability.tracing import start_tracing
from mlx_manager.pool.catalog import CatalogEntry, build_catalog, describe
from mlx_manager.pool.pool import ModelPool
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.body_bounds import BodyBounds
from mlx_manager.routing.build import build_generation
from mlx_manager.routing.providers.local import LocalProvider
from mlx_manager.security.secret_box import load_keyring
from mlx_manager.services.embedding_service import EmbeddingService
from mlx_manager.services.model_gate import ModelGate
from mlx_manager.services.response_store import ResponseStore
from mlx_manager.services.transcription import TranscriptionService
from mlx_manager.store.accounts_repo import AccountsRepository
from mlx_manager.store.database import Database
from mlx_manager.store.live_settings_repo import LiveSettingsRepository
from mlx_manager.store.routing_repo import RoutingRepository
from mlx_manager.store.urls import database_urls
from mlx_manager.types import ModelInfo

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, group: GroupLeader | None = None) -> None:
        engine_config, models_config = settings.engine(), settings.models()
        self._pool_config = settings.pool()
        self.group = group
        if group is not None:  # the sharded model lives as long as its group: pinned
            pins = (*self._pool_config.pin, group.model_id)
            self._pool_config = self._pool_config.model_copy(update={"pin": pins})
        self._models_config = models_config
        self.thread = EngineThread(engine_config, group)
        self.host = EngineModelHost(self.thread, engine_config, models_config)
        self.pool = ModelPool(self._pool_config, self.host)
        self.pool_limits = PoolLimits(self.pool, self._pool_config)  # live overrides
        self.badges = BadgeCache()  # the catalog's badges, per model directory
        self.lifecycle = Lifecycle()
        self.admission = Admission(engine_config.max_waiting_requests, self.thread.queued)
        self.aliases = AliasTable.parse(settings.server().model_aliases)
        self.client = EngineClient(
            self.thread,
            self.pool,
            self.lifecycle,
            self.admission,
            engine_config,
            settings.vision(),
        )
        self.metrics = Metrics(self.thread.snapshot, self.pool.status)
        self.metrics_enabled = settings.metrics
        self.tracing = start_tracing(settings.tracing())  # None: off
        self.audit = AuditLog(settings.audit_log(), self.metrics.registry)
        self._store_config = settings.store()
        server = settings.server()
        self.accounts = AccountService(None, server.api_key, server.signup)
        self.database: Database | None = None
        routing = settings.routing()
        self.generation, self.routing = build_generation(
            routing,
            LocalProvider(self.client, routing.local_timeouts),
            self.aliases,
            self.metrics.requests.observe if server.metrics else None,
            self.pool,
            self.accounts,
            telemetry=RouteTelemetry(self.metrics.fallbacks, self.tracing),
            audit=self.audit.routes if self.audit.enabled else None,
        )
        self.metrics.watch_routing(self.generation)
        self.body_bounds = BodyBounds(self.generation, self.pool.card)  # giant bodies: 413
        gate = ModelGate(self.pool, self.lifecycle, self.admission, self.aliases.resolve)
        self.embeddings = EmbeddingService(self.host.execute, gate, engine_config)
        self.transcription = TranscriptionService(self.host.execute, gate)
        self.responses = ResponseStore()  # conversations for previous_response_id
        self.downloads = DownloadManager(
            RecordFile(self._store_config.resolved_data_dir() / "downloads.json"),
            models_config.hub_timeout_s,
            self._add_downloaded,
        )
        self._unresolved: dict[str, str] = {}
        self._drain_timer: asyncio.TimerHandle | None = None

    async def open_store(self) -> None:
        """Open (and migrate) the database and add its routing configuration; ValueError with
        a message for the operator when it cannot be opened or is not valid."""
        store = self._store_config
        data_dir = store.resolved_data_dir()
        urls = database_urls(store.database_url, data_dir)
        try:
            await asyncio.to_thread(load_keyring, data_dir)  # made on first run, checked
            self.database = await Database.open(urls)
        except (OSError, SQLAlchemyError) as exc:
            raise ValueError(f"cannot open the store {urls.display()}: {exc}") from exc
        keys = lambda: load_keyring(data_dir)  # noqa: E731  (read at each use: see rotation)
        await self.routing.attach(RoutingRepository(self.database, keys))
        await self.accounts.start(AccountsRepository(self.database, keys))
        self.audit.start(self.database)
        await self.pool_limits.attach(LiveSettingsRepository(self.database))
        await self.downloads.open()

    @property
    def state(self) -> EngineState:
        return self.lifecycle.state

    @property
    def load_error(self) -> str | None:
        return self.lifecycle.load_error

    async def start(self, specs: list[ModelSpec]) -> None:
        """Start the engine thread, build the catalog, and load the startup models.

        Every `--model` is resolved (downloaded or converted if need be) now; the pinned
        models and then the `--model`s are loaded as far as the pool's limits allow without
        evicting (with no limits: all of them, as before the pool).
        """
        self.thread.start()
        if self.group is not None:
            loop = asyncio.get_running_loop()

            def on_lost(reason: str) -> None:  # on a reader thread
                loop.call_soon_threadsafe(self._group_lost, reason)

            self.group.watch(on_lost)
        self.lifecycle.state = EngineState.LOADING
        try:
            configured = await self._resolve_each(specs)
            pool = self._pool_config
            catalog = await asyncio.to_thread(
                build_catalog,
                configured,
                pool.model_dirs,
                pool.scan_hf_cache,
                self._models_config.context_length,
                {spec.model_id for spec in specs if spec.is_embedded},
            )
            await self.pool.start(catalog, [spec.model_id for spec in specs])
            for repo_id, path in self.downloads.finished():  # served after a restart too
                await self._add_downloaded(repo_id, path)
        except Exception as exc:
            self.lifecycle.state = EngineState.FAILED
            self.lifecycle.load_error = f"{type(exc).__name__}: {without_paths(str(exc))}"
            raise
        self.lifecycle.state = EngineState.READY

    async def _add_downloaded(self, repo_id: str, path: Path) -> None:
        """A finished download joins the served models under its HF id."""
        context = self._models_config.context_length
        entry = await asyncio.to_thread(describe, repo_id, path, "download", context)
        if self.pool.catalog.add(entry):
            log.info("model %s is downloaded and served", repo_id)

    @property
    def failed_models(self) -> dict[str, str]:
        """Start-up models that could not be resolved or loaded, with the reason."""
        return {**self._unresolved, **self.pool.startup_failures}

    async def _resolve_each(self, specs: list[ModelSpec]) -> list[tuple[str, Path]]:
        """Each spec's directory; one that cannot be resolved is recorded in
        `failed_models` and left out, unless none can (then start-up fails)."""
        resolved: list[tuple[str, Path]] = []
        first: Exception | None = None
        for spec in specs:
            try:
                resolved += await self.host.resolve([spec])
            except Exception as exc:
                log.error("model %s is not served: %s", spec.model_id, exc)
                self._unresolved[spec.model_id] = without_paths(str(exc))
                first = first or exc
        if first is not None and not resolved and not self._pool_config.model_dirs:
            raise first
        return resolved

    def _group_lost(self, reason: str) -> None:
        """A rank of the sharded model's group is gone: the group cannot compute any more.
        Every open request ends with an error event now (the engine thread may be stuck in
        a collective that never returns), and from now on requests and /health are 503."""
        message = f"{reason}; the server must be restarted with its whole group"
        self.lifecycle.fail(message)
        ended = self.client.fail_all(ErrorInfo.of(GroupLost(message, retry_after_s=10)))
        log.error("ended %d request(s) in flight: %s", ended, message)

    def drain(self, timeout_s: float) -> None:
        """Shutdown has begun: new requests are refused (503/529); the requests in flight
        may finish for `timeout_s`, then each still open ends with an error event, so a client
        never takes a cut stream for a whole answer."""
        if self.lifecycle.state in (EngineState.DRAINING, EngineState.FAILED):
            return
        self.lifecycle.state = EngineState.DRAINING
        log.info(
            "shutting down: %d request(s) in flight get %gs to finish",
            self.client.in_flight,
            timeout_s,
        )
        error = ErrorInfo.of(
            ServerShuttingDown(
                f"the server shut down before this request finished (after a {timeout_s:g}s "
                "drain); retry it",
                retry_after_s=5,
            )
        )
        self._drain_timer = asyncio.get_running_loop().call_later(
            timeout_s, self._end_open_streams, error
        )

    def _end_open_streams(self, error: ErrorInfo) -> None:
        ended = self.client.fail_all(error)
        if ended:
            log.warning("ended %d request(s) still running at shutdown", ended)

    async def stop(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        await self.downloads.close()  # running downloads stay resumable
        await self.routing.close()
        await self.audit.close()  # writes the rows still queued
        if self.database is not None:
            await self.database.close()
        await self.pool.stop()
        await asyncio.to_thread(self.thread.stop)
        if self.group is not None:  # the followers exit with rank 0
            await asyncio.to_thread(self.group.close)
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # export what is queued

    def snapshot(self) -> EngineSnapshot:
        return self.thread.snapshot()

    async def memory(self) -> MlxMemory:
        """MLX's allocator counters, read on the engine thread."""
        return await self.host.memory()

    def model_infos(self) -> list[ModelInfo]:
        """Every model that may be served, loaded or not."""
        return [self._info(entry) for entry in self.pool.catalog.entries()]

    def model_info(self, name: str) -> ModelInfo:
        """One model by name or alias: 404 if unknown."""
        self.lifecycle.check_started()
        return self._info(self.pool.entry(self.aliases.resolve(name)))

    def _info(self, entry: CatalogEntry) -> ModelInfo:
        resident = self.pool.resident(entry.model_id)
        return ModelInfo(
            entry.model_id,
            entry.created,
            entry.context_length,
            entry.family,
            str(entry.path),
            model_type=entry.model_type.value,
            size_bytes=entry.size_bytes,
            loaded=self.pool.is_loaded(entry.model_id),
            pinned=resident is not None and resident.pinned,
        )

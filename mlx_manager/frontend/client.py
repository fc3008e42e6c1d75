"""The asyncio side of the engine: submit requests, stream events, abort; the model pool.

The API layer knows only this class. Requests are validated and tokenized here, before
anything is queued, so a bad request fails with a 4xx before a stream starts. Each request
holds a pool lease on its model from submit to its final event, so a model with requests in
flight is never evicted; a model that is not resident is loaded (once) on its first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import numpy as np

from mlx_manager.config import EngineConfig, ModelsConfig, PoolConfig, VisionConfig
from mlx_manager.engine.core import EngineSnapshot
from mlx_manager.engine.loop import EngineThread
from mlx_manager.engine.model_host import EngineModelHost, MlxMemory
from mlx_manager.engine.output_parser import OutputParser
from mlx_manager.engine.prompt import completion_budget, prompt_ids_for
from mlx_manager.engine.request import EngineRequest
from mlx_manager.engine.structured import PreparedRequest, prepare, tool_format_of
from mlx_manager.engine.vision_request import image_policy, prepare_vision
from mlx_manager.errors import InvalidRequest, ModelLoading, Overloaded
from mlx_manager.models import speech_model
from mlx_manager.models.detection import ModelType
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.models.sources import ModelSpec
from mlx_manager.models.speech_model import Transcript, TranscriptionOptions
from mlx_manager.pool.catalog import CatalogEntry, build_catalog
from mlx_manager.pool.pool import ModelPool
from mlx_manager.pool.resident import Lease, ModelStatus, PoolStatus
from mlx_manager.services import embeddings
from mlx_manager.services.embeddings import EmbeddingInputs, EmbeddingLimits, EmbeddingResult
from mlx_manager.types import GenerateRequest, GenerationEvent, ModelInfo, merge_events

log = logging.getLogger(__name__)

T = TypeVar("T")


def _a_model(model_type: ModelType) -> str:
    return f"{'an' if model_type.value[0] in 'aeiou' else 'a'} {model_type} model"


_ENDPOINT_OF = {
    ModelType.EMBEDDINGS: "/v1/embeddings",
    ModelType.SPEECH: "/v1/audio/transcriptions",
}


class EngineState(enum.StrEnum):
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


def _drain(queue: asyncio.Queue[GenerationEvent]) -> list[GenerationEvent]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


class RequestStream:
    """Events of one submitted request; closing it early aborts the generation."""

    def __init__(
        self,
        request: EngineRequest,
        thread: EngineThread,
        parser: OutputParser | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.request = request
        self._thread = thread
        self._parser = parser  # splits content, reasoning and tool calls
        self._lease = lease  # the model pool's hold on the model, until the final event
        self._queue: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self._done = False

    def deliver(self, event: GenerationEvent) -> None:  # called on the event loop's thread
        if event.finished and self._lease is not None:
            self._lease.release()  # the engine is done with the model for this request
        self._queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        try:
            while not self._done:
                event = await self._queue.get()
                if not self._queue.empty():  # the reader fell behind: one chunk for all
                    event = merge_events([event, *_drain(self._queue)])
                self._done = event.finished
                yield self._parser.feed(event) if self._parser is not None else event
        finally:
            self.abort()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._thread.abort(self.request.request_id)


class EngineClient:
    def __init__(
        self,
        engine_config: EngineConfig,
        models_config: ModelsConfig,
        pool_config: PoolConfig | None = None,
        vision_config: VisionConfig | None = None,
    ) -> None:
        self._engine_config = engine_config
        self._models_config = models_config
        self._pool_config = pool_config or PoolConfig()
        self._vision = vision_config or VisionConfig()
        self._image_policy = image_policy(self._vision)
        self._thread = EngineThread(engine_config)
        self._host = EngineModelHost(self._thread, engine_config, models_config)
        self.pool = ModelPool(self._pool_config, self._host)
        self.state = EngineState.STARTING
        self.load_error: str | None = None
        # Embedding and transcription requests in flight: they queue on the engine thread
        # beside generation, so they count against --max-waiting-requests too.
        self._side_requests = 0

    async def start(self, specs: list[ModelSpec]) -> None:
        """Start the engine thread, build the catalog, and load the startup models.

        Every `--model` is resolved (downloaded or converted if need be) now; the pinned
        models and then the `--model`s are loaded as far as the pool's limits allow without
        evicting (with no limits: all of them, as before the pool).
        """
        self._thread.start()
        self.state = EngineState.LOADING
        try:
            configured = await self._host.resolve(specs)
            pool = self._pool_config
            catalog = await asyncio.to_thread(
                build_catalog,
                configured,
                pool.model_dirs,
                pool.scan_hf_cache,
                self._models_config.context_length,
            )
            await self.pool.start(catalog, [spec.model_id for spec in specs])
        except Exception as exc:
            self.state = EngineState.FAILED
            self.load_error = f"{type(exc).__name__}: {exc}"
            raise
        self.state = EngineState.READY

    async def stop(self) -> None:
        await self.pool.stop()
        await asyncio.to_thread(self._thread.stop)

    def model_infos(self) -> list[ModelInfo]:
        """Every model that may be served, loaded or not."""
        return [self._info(entry) for entry in self.pool.catalog.entries()]

    def model_info(self, model_id: str) -> ModelInfo:
        self._check_started()
        return self._info(self.pool.entry(model_id))

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

    def get_model(self, model_id: str) -> LoadedModel:
        """A resident model: 404 if unknown, 503 if served but not loaded right now.

        To work with a model, `submit` (or `count_tokens`) loads it and holds a lease.
        """
        self._check_started()
        entry = self.pool.entry(model_id)
        resident = self.pool.resident(model_id)
        if resident is None or not self.pool.is_loaded(model_id):
            raise ModelLoading(f"The model '{entry.model_id}' is not loaded.", retry_after_s=2)
        return resident.model

    def _check_started(self) -> None:
        if self.state in (EngineState.STARTING, EngineState.LOADING):
            raise ModelLoading("models are still loading; retry shortly", retry_after_s=2)

    async def _lease(self, request: GenerateRequest) -> Lease:
        """Check the model can generate text, load it if need be, and hold it."""
        self._check_started()
        entry = self.pool.entry(request.model)
        if request.images and entry.model_type is not ModelType.VISION:
            first = request.images[0]
            raise InvalidRequest(
                f"{first.param} is an image, but the model '{entry.model_id}' is "
                f"{_a_model(entry.model_type)}: it accepts text only; send images to a vision "
                "model.",
                param=first.param,
                code="model_type_mismatch",
            )
        if not entry.model_type.generates_text:
            raise InvalidRequest(
                f"The model '{entry.model_id}' is {_a_model(entry.model_type)}: it cannot "
                "generate text (chat, completions, messages); use it with "
                f"{_ENDPOINT_OF.get(entry.model_type, 'its own endpoint')}.",
                param="model",
                code="model_type_mismatch",
            )
        return await self.pool.acquire(request.model)

    async def embed(
        self,
        model_id: str,
        inputs: EmbeddingInputs,
        *,
        dimensions: int | None = None,
        truncate: bool = False,
    ) -> EmbeddingResult:
        """Unit vectors for `inputs` from an embeddings model, computed on the engine thread."""
        self._check_started()
        entry = self.pool.entry(model_id)
        if entry.model_type is not ModelType.EMBEDDINGS:
            raise InvalidRequest(
                f"The model '{entry.model_id}' is a {entry.model_type} model: it does not "
                "produce embeddings; use an embeddings model with /v1/embeddings.",
                param="model",
                code="model_type_mismatch",
            )
        config = self._engine_config
        limits = EmbeddingLimits(config.max_embedding_inputs, config.max_embedding_tokens)
        async with self._side_request(model_id) as model:
            embeddings.check_request(model, inputs, dimensions, limits)
            seqs = await asyncio.to_thread(embeddings.tokenize, model, inputs, truncate, limits)
            vectors = np.zeros((len(seqs), embeddings.spec_of(model).dimensions), np.float32)
            # One engine-thread call per batch: generation steps run between batches.
            for batch in embeddings.plan_batches([len(s) for s in seqs]):
                run = embeddings.forward_call(model, [seqs[i] for i in batch])
                vectors[batch] = await asyncio.wrap_future(self._thread.call(run))
            return embeddings.finish(model, vectors, seqs, dimensions)

    async def transcribe(
        self, model_id: str, audio: np.ndarray, options: TranscriptionOptions
    ) -> Transcript:
        """Speech to text with a speech model, run on the engine thread."""
        self._check_started()
        entry = self.pool.entry(model_id)
        if entry.model_type is not ModelType.SPEECH:
            raise InvalidRequest(
                f"The model '{entry.model_id}' is {_a_model(entry.model_type)}: it cannot "
                "transcribe audio; use a speech-to-text (Whisper) model with "
                "/v1/audio/transcriptions.",
                param="model",
                code="model_type_mismatch",
            )
        async with self._side_request(model_id) as model:
            options = dataclasses.replace(
                options, language=speech_model.check_language(model, options.language)
            )

            def run(_: object) -> Transcript:
                return speech_model.transcribe(model, audio, options)

            return await asyncio.wrap_future(self._thread.call(run))

    def pool_status(self) -> PoolStatus:
        return self.pool.status()

    async def memory(self) -> MlxMemory:
        """MLX's allocator counters, read on the engine thread."""
        return await self._host.memory()

    async def load_model(self, model_id: str) -> ModelStatus:
        """Load (if needed) and pin a model, as `POST /admin/models/load/{id}` does."""
        self._check_started()
        return await self.pool.load(model_id, pin=True)

    async def unload_model(self, model_id: str) -> None:
        """Unload now: 404 when not loaded, 409 while it has requests in flight."""
        self._check_started()
        await self.pool.unload(model_id)

    async def submit(self, request: GenerateRequest) -> RequestStream:
        """Validate, load the model if need be, tokenize and queue.

        Raises an ApiError before anything is queued. The stream holds a lease on the
        model until its final event.
        """
        self._check_waiting()
        lease = await self._lease(request)
        try:
            if lease.model.model_type is ModelType.VISION:
                vision = await prepare_vision(
                    lease.model,
                    request,
                    self._image_policy,
                    self._vision.max_images_per_request,
                    self._on_engine,
                )
                return self._queue(request, lease, vision.prepared, vision.media)
            # Rendering, tokenizing (~8 ms per 2,000 tokens) and compiling a grammar run in a
            # worker thread: on the event loop they would stall every other stream.
            prepared = await asyncio.to_thread(prepare, lease.model, request)
            return self._queue(request, lease, prepared)
        except BaseException:
            lease.release()
            raise

    def _check_waiting(self) -> None:
        """503 (Anthropic: 529) while --max-waiting-requests requests are queued."""
        waiting = self._thread.snapshot().waiting + self._side_requests
        if waiting >= self._engine_config.max_waiting_requests:
            raise Overloaded("too many requests are waiting; retry later", retry_after_s=1)

    @contextlib.asynccontextmanager
    async def _side_request(self, model_id: str) -> AsyncIterator[LoadedModel]:
        """Admit an embedding or transcription request, count it and hold its model (a pool
        lease) while it runs."""
        self._check_waiting()
        self._side_requests += 1
        try:
            lease = await self.pool.acquire(model_id)
            try:
                yield lease.model
            finally:
                lease.release()
        finally:
            self._side_requests -= 1

    async def _on_engine(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._thread.call(lambda _core: fn()))

    def _queue(
        self,
        request: GenerateRequest,
        lease: Lease,
        prepared: PreparedRequest,
        media: dict[str, Any] | None = None,
    ) -> RequestStream:
        model = lease.model
        prompt_ids = prepared.prompt_ids
        max_tokens = completion_budget(
            len(prompt_ids),
            request.sampling.max_tokens,
            model.context_length,
            self._engine_config.default_max_tokens,
        )
        engine_request = EngineRequest(
            request.request_id,
            model.model_id,
            tuple(prompt_ids),
            prepared.sampling,
            max_tokens,
            request.priority,
            media=media,
        )
        stream = RequestStream(engine_request, self._thread, prepared.parser, lease)
        self._thread.submit(engine_request, stream)
        return stream

    async def count_tokens(self, request: GenerateRequest) -> int:
        """Prompt tokens of a request, rendered as `submit` would (tools included)."""
        lease = await self._lease(request)
        try:
            model = lease.model
            fmt = tool_format_of(model, request)
            return len(await asyncio.to_thread(prompt_ids_for, model, request, fmt))
        finally:
            lease.release()

    def snapshot(self) -> EngineSnapshot:
        return self._thread.snapshot()

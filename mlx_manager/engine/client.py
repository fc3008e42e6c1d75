"""The asyncio side of the engine: load models, submit requests, stream events, abort.

The API layer knows only this class. Requests are validated and tokenized here, before
anything is queued, so a bad request fails with a 4xx before a stream starts.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator
from typing import Any

from mlx_manager.config import EngineConfig, ModelsConfig
from mlx_manager.engine.core import EngineCore, EngineSnapshot
from mlx_manager.engine.loop import EngineThread
from mlx_manager.engine.prompt import completion_budget, prompt_ids_for
from mlx_manager.engine.output_parser import OutputParser
from mlx_manager.engine.request import EngineRequest
from mlx_manager.engine.structured import prepare, tool_format_of
from mlx_manager.errors import ModelLoading, ModelNotFound, Overloaded
from mlx_manager.models.loaded import LoadedModel, load_text_model, resolve_spec_dir
from mlx_manager.models.sources import ModelSpec
from mlx_manager.types import GenerateRequest, GenerationEvent, ModelInfo

log = logging.getLogger(__name__)


class EngineState(enum.StrEnum):
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


class RequestStream:
    """Events of one submitted request; closing it early aborts the generation."""

    def __init__(
        self, request: EngineRequest, thread: EngineThread, parser: OutputParser | None = None
    ) -> None:
        self.request = request
        self._thread = thread
        self._parser = parser  # splits content, reasoning and tool calls
        self._queue: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self._done = False

    def deliver(self, event: GenerationEvent) -> None:  # called on the event loop's thread
        self._queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        try:
            while not self._done:
                event = await self._queue.get()
                self._done = event.finished
                yield self._parser.feed(event) if self._parser is not None else event
        finally:
            self.abort()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._thread.abort(self.request.request_id)


class EngineClient:
    def __init__(self, engine_config: EngineConfig, models_config: ModelsConfig) -> None:
        self._engine_config = engine_config
        self._models_config = models_config
        self._thread = EngineThread(engine_config)
        self._models: dict[str, LoadedModel] = {}
        self.state = EngineState.STARTING
        self.load_error: str | None = None

    async def start(self, specs: list[ModelSpec]) -> None:
        """Start the engine thread and load every model (on that thread)."""
        self._thread.start()
        self.state = EngineState.LOADING
        try:
            for spec in specs:
                model = await asyncio.wrap_future(self._thread.call(self._loader(spec)))
                self._models[model.model_id] = model
                log.info("model %s ready (%s)", model.model_id, model.path)
        except Exception as exc:
            self.state = EngineState.FAILED
            self.load_error = f"{type(exc).__name__}: {exc}"
            raise
        self.state = EngineState.READY

    def _loader(self, spec: ModelSpec) -> Any:
        config = self._models_config

        def load(core: EngineCore) -> LoadedModel:
            path = resolve_spec_dir(spec, config.cache_dir, config.hub_timeout_s)
            model = load_text_model(spec, path, config.context_length, config.cpu_float32_max_gb)
            core.add_model(model)
            return model

        return load

    async def stop(self) -> None:
        await asyncio.to_thread(self._thread.stop)

    def model_infos(self) -> list[ModelInfo]:
        return [
            ModelInfo(m.model_id, m.created, m.context_length, m.family.name, str(m.path))
            for m in self._models.values()
        ]

    def get_model(self, model_id: str) -> LoadedModel:
        model = self._models.get(model_id)
        if model is not None:
            return model
        if self.state in (EngineState.STARTING, EngineState.LOADING):
            raise ModelLoading("models are still loading; retry shortly", retry_after_s=2)
        served = ", ".join(sorted(self._models)) or "none"
        raise ModelNotFound(
            f"The model '{model_id}' does not exist or is not served here (served: {served}).",
            param="model",
        )

    def submit(self, request: GenerateRequest) -> RequestStream:
        """Validate, tokenize and queue; raises an ApiError before anything is queued."""
        model = self.get_model(request.model)
        if self._thread.snapshot().waiting >= self._engine_config.max_waiting_requests:
            raise Overloaded("too many requests are waiting; retry later", retry_after_s=1)
        prepared = prepare(model, request)
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
        )
        stream = RequestStream(engine_request, self._thread, prepared.parser)
        self._thread.submit(engine_request, stream)
        return stream

    def count_tokens(self, request: GenerateRequest) -> int:
        """Prompt tokens of a request, rendered as `submit` would (tools included)."""
        model = self.get_model(request.model)
        return len(prompt_ids_for(model, request, tool_format_of(model, request)))

    def snapshot(self) -> EngineSnapshot:
        return self._thread.snapshot()

"""The asyncio side of text generation: submit a request, stream its events, abort.

Requests are validated and tokenized here, before anything is queued, so a bad request fails
with a 4xx before a stream starts. Each request holds a pool lease on its model from submit to
its final event, so a model with requests in flight is never evicted; a model that is not
resident is loaded (once) on its first request. Only the model's card (tokenizer, family,
limits) is used here: the weights stay on the engine thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable

from PIL.Image import Image

from mlx_manager.config import EngineConfig, VisionConfig
from mlx_manager.engine import commands as cmd
from mlx_manager.engine.loop import EngineThread
from mlx_manager.engine.request import EngineRequest
from mlx_manager.errors import ErrorInfo, InvalidRequest
from mlx_manager.frontend.admission import Admission, Slot
from mlx_manager.frontend.lifecycle import Lifecycle
from mlx_manager.frontend.output_parser import OutputParser
from mlx_manager.frontend.preparation import PreparedRequest, prepare, tool_format_of
from mlx_manager.frontend.prompt import completion_budget, prompt_ids_for
from mlx_manager.frontend.vision_inputs import VisionInputsBuilder, image_policy, prepare_vision
from mlx_manager.models.detection import ModelType
from mlx_manager.models.vision_model import VisionInputs
from mlx_manager.pool.pool import ModelPool
from mlx_manager.pool.resident import Lease
from mlx_manager.types import FinishReason, GenerateRequest, GenerationEvent, merge_events

log = logging.getLogger(__name__)


def a_model(model_type: ModelType) -> str:
    return f"{'an' if model_type.value[0] in 'aeiou' else 'a'} {model_type} model"


_ENDPOINT_OF = {
    ModelType.EMBEDDINGS: "/v1/embeddings",
    ModelType.SPEECH: "/v1/audio/transcriptions",
}


def _drain(queue: asyncio.Queue[GenerationEvent]) -> list[GenerationEvent]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


class RequestStream:
    """Events of one submitted request (an `EventStream`); closing it early aborts it."""

    def __init__(
        self,
        request: EngineRequest,
        thread: EngineThread,
        parser: OutputParser | None = None,
        lease: Lease | None = None,
        on_end: Callable[[RequestStream], None] | None = None,
    ) -> None:
        self._request_id = request.request_id
        self._prompt_tokens = len(request.prompt_ids)
        self._thread = thread
        self._parser = parser  # splits content, reasoning and tool calls
        self._lease = lease  # the model pool's hold on the model, until the final event
        self._queue: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self._done = False  # the reader has seen the final event (or aborted)
        self._ended = False  # the final event is queued for the reader
        self._on_end = on_end

    @property
    def prompt_tokens(self) -> int:
        return self._prompt_tokens

    def deliver(self, event: GenerationEvent) -> None:  # called on the event loop's thread
        if event.finished and self._lease is not None:
            self._lease.release()  # the engine is done with the model for this request
        if self._ended:
            return  # ended early by `fail`: this is the engine's abort coming through
        if event.finished:
            self._end()
        self._queue.put_nowait(event)

    def fail(self, error: ErrorInfo) -> None:
        """End the stream now with `error` as its final event and stop the generation (the
        lease is kept until the engine confirms the abort)."""
        if self._ended:
            return
        self._end()
        self._queue.put_nowait(
            GenerationEvent(self._request_id, finish_reason=FinishReason.ERROR, error=error)
        )
        self._thread.abort(self._request_id)

    def _end(self) -> None:
        self._ended = True
        if self._on_end is not None:
            self._on_end(self)

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
            self._thread.abort(self._request_id)


class EngineClient:
    """The local engine as a generation provider: `submit` and `count_tokens`."""

    def __init__(
        self,
        thread: EngineThread,
        pool: ModelPool,
        lifecycle: Lifecycle,
        admission: Admission,
        engine_config: EngineConfig,
        vision_config: VisionConfig,
    ) -> None:
        self._thread = thread
        self._pool = pool
        self._lifecycle = lifecycle
        self._admission = admission
        self._default_max_tokens = engine_config.default_max_tokens
        self._vision = vision_config
        self._image_policy = image_policy(vision_config)
        # Engine ids are minted here: a client's x-request-id is only echoed, since gateways
        # reuse one on retries and the engine keys its streams by id.
        self._engine_ids = itertools.count(1)
        self._live: set[RequestStream] = set()  # submitted, final event not yet queued

    @property
    def in_flight(self) -> int:
        return len(self._live)

    def fail_all(self, error: ErrorInfo) -> int:
        """End every open stream with `error` (shutdown); how many there were."""
        streams = list(self._live)
        for stream in streams:
            stream.fail(error)
        return len(streams)

    async def submit(self, request: GenerateRequest) -> RequestStream:
        """Validate, load the model if need be, tokenize and queue.

        Raises an ApiError before anything is queued. The stream holds a lease on the
        model until its final event.
        """
        slot = self._admission.admit()  # before any await: a burst cannot overtake it
        try:
            lease = await self._lease(request)
        except BaseException:
            slot.release()
            raise
        try:
            card = lease.card
            if card.model_type is ModelType.VISION:
                vision = await prepare_vision(
                    card,
                    request,
                    self._image_policy,
                    self._vision.max_images_per_request,
                    self._vision_inputs(card.model_id),
                )
                return self._queue(request, lease, slot, vision.prepared, vision.media)
            # Rendering, tokenizing (~8 ms per 2,000 tokens) and compiling a grammar run in a
            # worker thread: on the event loop they would stall every other stream.
            prepared = await asyncio.to_thread(prepare, card, request)
            return self._queue(request, lease, slot, prepared)
        except BaseException:
            slot.release()
            lease.release()
            raise

    async def count_tokens(self, request: GenerateRequest) -> int:
        """Prompt tokens of a request, rendered as `submit` would (tools included).

        Tokenizing costs like a prefill's preparation, so a count queues like one."""
        with self._admission.side_request():
            lease = await self._lease(request)
            try:
                card = lease.card
                fmt = tool_format_of(card, request)
                return len(await asyncio.to_thread(prompt_ids_for, card, request, fmt))
            finally:
                lease.release()

    async def _lease(self, request: GenerateRequest) -> Lease:
        """Check the model can generate text, load it if need be, and hold it."""
        self._lifecycle.check_started()
        entry = self._pool.entry(request.model)
        if request.images and entry.model_type is not ModelType.VISION:
            first = request.images[0]
            raise InvalidRequest(
                f"{first.param} is an image, but the model '{entry.model_id}' is "
                f"{a_model(entry.model_type)}: it accepts text only; send images to a vision "
                "model.",
                param=first.param,
                code="model_type_mismatch",
            )
        if not entry.model_type.generates_text:
            raise InvalidRequest(
                f"The model '{entry.model_id}' is {a_model(entry.model_type)}: it cannot "
                "generate text (chat, completions, messages); use it with "
                f"{_ENDPOINT_OF.get(entry.model_type, 'its own endpoint')}.",
                param="model",
                code="model_type_mismatch",
            )
        return await self._pool.acquire(request.model)

    def _vision_inputs(self, model_id: str) -> VisionInputsBuilder:
        """Tokenizing and preprocessing a vision prompt is engine-thread work (a command)."""

        async def build(text: str, images: list[Image]) -> VisionInputs:
            command = cmd.BuildVisionInputs(model_id, text, tuple(images))
            return await asyncio.wrap_future(self._thread.execute(command))

        return build

    def _queue(
        self,
        request: GenerateRequest,
        lease: Lease,
        slot: Slot,
        prepared: PreparedRequest,
        media: dict[str, object] | None = None,
    ) -> RequestStream:
        card = lease.card
        prompt_ids = prepared.prompt_ids
        max_tokens = completion_budget(
            len(prompt_ids),
            request.sampling.max_tokens,
            card.context_length,
            self._default_max_tokens,
        )
        engine_request = EngineRequest(
            f"{request.request_id}#{next(self._engine_ids)}",
            card.model_id,
            tuple(prompt_ids),
            prepared.sampling,
            max_tokens,
            request.priority,
            media=media,
        )
        stream = RequestStream(
            engine_request, self._thread, prepared.parser, lease, self._live.discard
        )
        self._live.add(stream)
        self._thread.submit(engine_request, stream)
        slot.release()  # the engine counts it as queued from here (EngineThread.queued)
        return stream

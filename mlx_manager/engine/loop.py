"""The engine thread: the only thread that touches MLX.

Everything reaches it as a message on one queue (submit, abort, a callable to run such as a
model load); between messages it steps the core. Events leave through per-request sinks that
the asyncio side provides.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from mlx_manager.config import EngineConfig
from mlx_manager.engine.core import EngineCore, EngineSnapshot, EventSink
from mlx_manager.engine.request import EngineRequest
from mlx_manager.types import GenerationEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Submit:
    request: EngineRequest
    sink: EventSink


@dataclass(frozen=True, slots=True)
class _Abort:
    request_id: str


@dataclass(frozen=True, slots=True)
class _Call:
    fn: Callable[[EngineCore], Any]
    future: Future[Any]


_STOP = object()


class EngineThread:
    def __init__(self, config: EngineConfig) -> None:
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._sinks: dict[str, EventSink] = {}
        self._core = EngineCore(config, self._dispatch)
        self._thread = threading.Thread(target=self._run, name="mlx-engine", daemon=True)
        self._snapshot = self._core.snapshot()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._inbox.put(_STOP)
        self._thread.join(timeout)

    def submit(self, request: EngineRequest, sink: EventSink) -> None:
        self._inbox.put(_Submit(request, sink))

    def abort(self, request_id: str) -> None:
        self._inbox.put(_Abort(request_id))

    def call(self, fn: Callable[[EngineCore], Any]) -> Future[Any]:
        """Run `fn(core)` on the engine thread (model loads, anything touching MLX)."""
        future: Future[Any] = Future()
        self._inbox.put(_Call(fn, future))
        return future

    def snapshot(self) -> EngineSnapshot:
        """The last snapshot the engine thread published (read without locking it)."""
        return self._snapshot

    def _run(self) -> None:
        while True:
            block = not self._core.has_work()
            try:
                message = self._inbox.get(block=block, timeout=0.5 if block else None)
            except queue.Empty:
                message = None
            if message is _STOP:
                return
            if message is not None:
                self._handle(message)
                if not self._inbox.empty():
                    continue  # take every pending message before the next token
                self._snapshot = self._core.snapshot()
            try:
                self._core.step()
            except Exception:  # never let the engine thread die
                log.exception("engine step failed")
            self._snapshot = self._core.snapshot()

    def _handle(self, message: object) -> None:
        if isinstance(message, _Submit):
            self._sinks[message.request.request_id] = message.sink
            self._core.add_request(message.request)
        elif isinstance(message, _Abort):
            self._core.abort(message.request_id)
        elif isinstance(message, _Call):
            if not message.future.set_running_or_notify_cancel():
                return
            try:
                message.future.set_result(message.fn(self._core))
            except BaseException as exc:
                message.future.set_exception(exc)

    def _dispatch(self, event: GenerationEvent) -> None:
        sink = (
            self._sinks.pop(event.request_id, None)
            if event.finished
            else (self._sinks.get(event.request_id))
        )
        if sink is not None:
            sink(event)

"""The engine thread: the only thread that touches MLX.

Everything reaches it as a message on one queue (submit, abort, or a typed command such as a
model load, answered through a future); between messages it steps the core. Events leave
through per-request subscribers; all events of one step cross to the event loop in a single
thread-safe call, so a batch of 64 streams costs one wake-up of the asyncio side rather than
64.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mlx_manager.config import EngineConfig
from mlx_manager.engine.command_handler import CommandHandler
from mlx_manager.engine.commands import Command
from mlx_manager.engine.core import EngineCore, EngineSnapshot
from mlx_manager.engine.gil_handoff import SwitchInterval
from mlx_manager.engine.request import EngineRequest
from mlx_manager.engine.sharding import ShardGroup
from mlx_manager.types import GenerationEvent

log = logging.getLogger(__name__)

R = TypeVar("R")


class Subscriber(Protocol):
    """Receives one request's events on its event loop's thread."""

    loop: asyncio.AbstractEventLoop

    def deliver(self, event: GenerationEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class _Submit:
    request: EngineRequest
    subscriber: Subscriber


@dataclass(frozen=True, slots=True)
class _Abort:
    request_id: str


@dataclass(frozen=True, slots=True)
class _Execute:
    command: Command[Any]
    future: Future[Any]


_STOP = object()
SNAPSHOT_PERIOD_S = 0.05


class EngineThread:
    def __init__(self, config: EngineConfig, group: ShardGroup | None = None) -> None:
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._subscribers: dict[str, Subscriber] = {}
        self._outbox: list[tuple[Subscriber, GenerationEvent]] = []
        self._core = EngineCore(config, self._dispatch, group)
        self._commands = CommandHandler(self._core)
        self._thread = threading.Thread(target=self._run, name="mlx-engine", daemon=True)
        self._snapshot_at = time.monotonic()
        # Submits are counted on both sides (one writer each) so `queued` also sees requests
        # still in the inbox or taken in since the last snapshot.
        self._submits_sent = 0  # event loop side
        self._submits_taken = 0  # engine thread side
        self._published: tuple[EngineSnapshot, int] = (self._core.snapshot(), 0)
        self._switch = SwitchInterval(config.gil_switch_interval_ms / 1000)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._inbox.put(_STOP)
        if self._thread.is_alive():  # never started: the server stopped before loading
            self._thread.join(timeout)

    def submit(self, request: EngineRequest, subscriber: Subscriber) -> None:
        self._submits_sent += 1
        self._inbox.put(_Submit(request, subscriber))

    def abort(self, request_id: str) -> None:
        self._inbox.put(_Abort(request_id))

    def execute(self, command: Command[R]) -> Future[R]:
        """Run `command` on the engine thread (model loads, anything touching MLX)."""
        future: Future[R] = Future()
        self._inbox.put(_Execute(command, future))
        return future

    def snapshot(self) -> EngineSnapshot:
        """The last snapshot the engine thread published (read without locking it)."""
        return self._published[0]

    def queued(self) -> int:
        """Submitted requests not yet running: those the last snapshot counts as waiting plus
        every submit it has not seen. Never less than the truth, though the snapshot lags.
        Call it from the thread that submits."""
        snapshot, submits_seen = self._published
        return snapshot.waiting + self._submits_sent - submits_seen

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._switch.restore()

    def _loop(self) -> None:
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
                self._flush()
                self._publish_snapshot()
            self._switch.update(len(self._subscribers))
            try:
                self._core.step()
            except Exception:  # never let the engine thread die
                log.exception("engine step failed")
            self._flush()
            self._publish_snapshot()

    def _publish_snapshot(self) -> None:
        """At most every SNAPSHOT_PERIOD_S while busy (it is read rarely), when idle, and
        whenever the queue's length changed: admission counts on it (`queued`)."""
        now = time.monotonic()
        if (
            now - self._snapshot_at >= SNAPSHOT_PERIOD_S
            or not self._core.has_work()
            or self._core.waiting != self._published[0].waiting
        ):
            # The snapshot and the submits it has seen, in one atomic store.
            self._published = (self._core.snapshot(), self._submits_taken)
            self._snapshot_at = now

    def _handle(self, message: object) -> None:
        if isinstance(message, _Submit):
            self._submits_taken += 1
            self._subscribers[message.request.request_id] = message.subscriber
            self._core.add_request(message.request)
        elif isinstance(message, _Abort):
            self._core.abort(message.request_id)
        elif isinstance(message, _Execute):
            if not message.future.set_running_or_notify_cancel():
                return
            try:
                message.future.set_result(self._commands.handle(message.command))
            except BaseException as exc:
                message.future.set_exception(exc)

    def _dispatch(self, event: GenerationEvent) -> None:
        subscribers = self._subscribers
        subscriber = (
            subscribers.pop(event.request_id, None)
            if event.finished
            else subscribers.get(event.request_id)
        )
        if subscriber is not None:
            self._outbox.append((subscriber, event))

    def _flush(self) -> None:
        if not self._outbox:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Subscriber, GenerationEvent]]]
        by_loop = defaultdict(list)
        for item in self._outbox:
            by_loop[item[0].loop].append(item)
        self._outbox = []
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the event loop is gone (shutdown)
                loop.call_soon_threadsafe(_deliver_all, items)


def _deliver_all(items: list[tuple[Subscriber, GenerationEvent]]) -> None:
    for subscriber, event in items:
        subscriber.deliver(event)

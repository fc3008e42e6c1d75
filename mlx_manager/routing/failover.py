"""Failover along a route's chain of targets, decided from a closed set of failure classes.

- A caller error (a 4xx other than 408, 409 and 429) never fails over: the next target
  would refuse the same request.
- Everything else moves on to the next target: an upstream's 5xx, 429 and 529, connect
  errors, timeouts (first token included, local ones too) and local failures (model not
  loadable, pool full, queue full, an engine error before the first token).
- Pool-aware: a `precheck` may pass over a target before it is tried (routing/pool_aware.py:
  a local model that is not resident and could not load within the rule's budget). It is
  consulted only while a later target is available, so a lone target is always tried, and
  such a skip (class `pool_budget`) never cools the target down.
- Only before the first event reaches the client: a chain of two or more targets peeks at
  the first event before answering, so the client sees one clean answer or one error.
- Per-target cooldown: after `failures` consecutive failures, or at once when the target
  sent Retry-After, the target is skipped for `seconds` (or Retry-After's seconds).

Our own (DESIGN.md: routing is ours): a gateway's fallback code comes with its own retry
loops and SDK clients, and MLX Manager is the only retry loop here.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from mlx_manager.errors import (
    ApiError,
    BackendTimeout,
    LoadOverBudget,
    Overloaded,
    UpstreamUnavailable,
)
from mlx_manager.routing.rules import Route, Target
from mlx_manager.types import EventStream, GenerationEvent

log = logging.getLogger(__name__)

BACKEND_HEADER = "x-mlx-manager-backend"
LEFT_MACHINE_HEADER = "x-mlx-manager-data-left-machine"


class FailureClass(enum.StrEnum):
    CALLER = "caller"  # the request itself is wrong: never fails over
    RATE_LIMITED = "rate_limited"  # 429
    OVERLOADED = "overloaded"  # 503 / 529: busy, pool full, queue full, shutting down
    UNREACHABLE = "unreachable"  # connect error, broken stream
    TIMEOUT = "timeout"  # 408, 504: connect, first token, idle gap, total
    CONFLICT = "conflict"  # 409
    SERVER = "server"  # other 5xx: upstream failure, model not loadable, engine error
    POOL_BUDGET = "pool_budget"  # a local target passed over before any load was started

    @property
    def fails_over(self) -> bool:
        return self is not FailureClass.CALLER

    @property
    def cools_down(self) -> bool:
        """A skip decided from the pool's state says nothing about the target's health."""
        return self not in (FailureClass.CALLER, FailureClass.POOL_BUDGET)


def classify(error: ApiError) -> FailureClass:
    if isinstance(error, LoadOverBudget):
        return FailureClass.POOL_BUDGET
    if isinstance(error, UpstreamUnavailable):
        return FailureClass.UNREACHABLE
    if isinstance(error, BackendTimeout) or error.status == 408:
        return FailureClass.TIMEOUT
    if error.status == 429:
        return FailureClass.RATE_LIMITED
    if isinstance(error, Overloaded):
        return FailureClass.OVERLOADED
    if error.status == 409:
        return FailureClass.CONFLICT
    if error.status >= 500:
        return FailureClass.SERVER
    return FailureClass.CALLER


def retry_after_s(error: ApiError) -> float | None:
    value = {k.lower(): v for k, v in error.headers.items()}.get("retry-after", "")
    return float(value) if value.isdigit() else None


@dataclass(slots=True)
class _Health:
    failures: int = 0
    until: float = 0.0


class Cooldowns:
    """Consecutive failures per target key; a cooled-down target is skipped until `until`."""

    def __init__(
        self, failures: int, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = failures
        self._seconds = seconds
        self._clock = clock
        self._health: dict[str, _Health] = {}

    def remaining(self, key: str) -> float:
        health = self._health.get(key)
        return 0.0 if health is None else max(health.until - self._clock(), 0.0)

    def failed(self, key: str, error: ApiError) -> None:
        health = self._health.setdefault(key, _Health())
        health.failures += 1
        wait = retry_after_s(error)
        if wait is None and health.failures >= self._threshold:
            wait = self._seconds
        if wait:
            health.until = self._clock() + wait
            health.failures = 0
            log.warning("route target %s cools down for %gs", key, wait)

    def succeeded(self, key: str) -> None:
        self._health.pop(key, None)

    def cooling_down(self) -> list[str]:
        """The keys of the targets skipped now (read by /metrics at scrape time)."""
        now = self._clock()
        return [key for key, health in list(self._health.items()) if health.until > now]


@dataclass(frozen=True, slots=True)
class Backend:
    """Who answered: named on every response."""

    target: Target
    left_machine: bool

    def headers(self) -> dict[str, str]:
        return {
            BACKEND_HEADER: self.target.key,
            LEFT_MACHINE_HEADER: "true" if self.left_machine else "false",
        }


class RoutedStream:
    """The stream of the target that answered, its backend, and the first event if it was
    peeked (it comes first). Leaving early aborts the generation."""

    def __init__(
        self,
        inner: EventStream,
        backend: Backend,
        first: GenerationEvent | None = None,
        iterator: AsyncIterator[GenerationEvent] | None = None,
    ) -> None:
        self._inner = inner
        self.backend = backend
        self._first = first
        self._iterator = iterator

    @property
    def headers(self) -> dict[str, str]:
        return self.backend.headers()

    @property
    def prompt_tokens(self) -> int:
        return self._inner.prompt_tokens

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        if self._first is None:
            return aiter(self._inner)
        return self._events(self._first, self._iterator or aiter(self._inner))

    async def _events(
        self, first: GenerationEvent, rest: AsyncIterator[GenerationEvent]
    ) -> AsyncIterator[GenerationEvent]:
        finished = first.finished
        try:
            yield first
            while not finished:
                event = await anext(rest, None)
                if event is None:
                    return
                finished = event.finished
                yield event
        finally:
            if not finished:
                self._inner.abort()
            closer = getattr(rest, "aclose", None)
            if closer is not None:
                await closer()

    def abort(self) -> None:
        self._inner.abort()


Attempt = Callable[[Target], Awaitable[tuple[EventStream, bool]]]
# Raises (LoadOverBudget) to pass over a target before it is tried; returns if it may be.
Precheck = Callable[[Target], None]
# Told of each target passed over (metrics, tracing, the audit log): its failure class and
# the error, or "cooldown" and None for one skipped untried.
FailureListener = Callable[[Target, str, ApiError | None], None]


async def run_chain(
    route: Route,
    attempt: Attempt,
    cooldowns: Cooldowns,
    precheck: Precheck | None = None,
    on_failure: FailureListener | None = None,
) -> RoutedStream:
    """The first target of the chain whose first event is not a failure; the last failure
    (or 503 when every target is cooling down) when none answers."""
    last: ApiError | None = None
    waits: list[float] = []
    for index, target in enumerate(route.targets):
        wait = cooldowns.remaining(target.key)
        if wait > 0:
            waits.append(wait)
            if on_failure is not None:
                on_failure(target, "cooldown", None)
            continue
        try:
            if precheck is not None and _later_available(route.targets[index + 1 :], cooldowns):
                precheck(target)
            return await _first_answer(target, attempt, cooldowns)
        except ApiError as error:
            failure = classify(error)
            if not failure.fails_over:
                raise
            log.warning("route %r: %s failed (%s): %s", route.requested, target.key, failure, error)
            if on_failure is not None:
                on_failure(target, failure, error)
            if failure.cools_down:
                cooldowns.failed(target.key, error)
            last = error
    if last is not None:
        raise last
    raise Overloaded(
        f"every backend of model {route.requested!r} is cooling down after failures",
        retry_after_s=max(1, math.ceil(min(waits))),
    )


def _later_available(targets: tuple[Target, ...], cooldowns: Cooldowns) -> bool:
    return any(cooldowns.remaining(t.key) <= 0 for t in targets)


async def _first_answer(target: Target, attempt: Attempt, cooldowns: Cooldowns) -> RoutedStream:
    stream, left_machine = await attempt(target)
    iterator = aiter(stream)
    try:
        first = await anext(iterator, None)
    except BaseException:
        stream.abort()
        raise
    if first is None:
        raise UpstreamUnavailable(f"{target.key} ended without an answer")
    if first.error is not None:
        raise first.error.api_error()
    cooldowns.succeeded(target.key)
    return RoutedStream(stream, Backend(target, left_machine), first, iterator)

"""Admission against --max-waiting-requests, shared by every kind of request.

A request takes a slot the moment it arrives, synchronously on the event loop: no await lies
between the check and the booking, so a burst of simultaneous requests cannot all pass a count
that none of them has raised yet. A generation request holds its slot while it is prepared
(model load, tokenizing) and gives it up when handed to the engine, which from then on counts
it as queued until it runs (`EngineThread.queued`). Embedding and transcription requests queue
on the engine thread beside them and hold their slot until done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from mlx_manager.errors import Overloaded


class Slot:
    """One admitted request's place in the queue; `release` is idempotent."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        if self._admission is not None:
            self._admission._leave()
            self._admission = None


class Admission:
    def __init__(self, max_waiting: int, engine_queued: Callable[[], int]) -> None:
        self._max_waiting = max_waiting
        self._engine_queued = engine_queued
        self._preparing = 0  # admitted, not yet handed to the engine (or side requests running)

    @property
    def waiting(self) -> int:
        return self._preparing + self._engine_queued()

    def admit(self) -> Slot:
        """A slot, or 503 (Anthropic: 529) while --max-waiting-requests requests wait."""
        if self.waiting >= self._max_waiting:
            raise Overloaded("too many requests are waiting; retry later", retry_after_s=1)
        self._preparing += 1
        return Slot(self)

    @contextlib.contextmanager
    def side_request(self) -> Iterator[None]:
        """Admit an embedding or transcription request and count it while it runs."""
        slot = self.admit()
        try:
            yield
        finally:
            slot.release()

    def _leave(self) -> None:
        self._preparing -= 1

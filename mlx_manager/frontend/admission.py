"""Admission against --max-waiting-requests, shared by every kind of request.

Generation requests wait in the engine's scheduler; embedding and transcription requests
queue on the engine thread beside them, so both count against the one limit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from mlx_manager.engine.core import EngineSnapshot
from mlx_manager.errors import Overloaded


class Admission:
    def __init__(self, snapshot: Callable[[], EngineSnapshot], max_waiting: int) -> None:
        self._snapshot = snapshot
        self._max_waiting = max_waiting
        self._side_requests = 0  # embedding and transcription requests in flight

    def check(self) -> None:
        """503 (Anthropic: 529) while --max-waiting-requests requests are queued."""
        waiting = self._snapshot().waiting + self._side_requests
        if waiting >= self._max_waiting:
            raise Overloaded("too many requests are waiting; retry later", retry_after_s=1)

    @contextlib.contextmanager
    def side_request(self) -> Iterator[None]:
        """Admit an embedding or transcription request and count it while it runs."""
        self.check()
        self._side_requests += 1
        try:
            yield
        finally:
            self._side_requests -= 1

"""Where the server is in its start-up, and the 503 every model-facing call gives meanwhile."""

from __future__ import annotations

import enum

from mlx_manager.errors import EngineUnavailable, ModelLoading, ServerShuttingDown


class EngineState(enum.StrEnum):
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"  # shutting down: in-flight requests finish, new ones are refused
    FAILED = "failed"


class Lifecycle:
    def __init__(self) -> None:
        self.state = EngineState.STARTING
        self.load_error: str | None = None

    def fail(self, reason: str) -> None:
        """The engine can no longer serve (a distributed group lost a rank): 503 from now."""
        self.state = EngineState.FAILED
        self.load_error = reason

    def check_started(self) -> None:
        """503 (retry shortly) until the start-up models are resolved and the pool started."""
        if self.state in (EngineState.STARTING, EngineState.LOADING):
            raise ModelLoading("models are still loading; retry shortly", retry_after_s=2)
        if self.state is EngineState.FAILED:
            raise EngineUnavailable(self.load_error or "the engine failed", retry_after_s=10)
        if self.state is EngineState.DRAINING:
            raise ServerShuttingDown("the server is shutting down; retry shortly", retry_after_s=5)

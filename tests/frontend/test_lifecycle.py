"""The start-up and shutdown states and what model-facing calls get meanwhile."""

from __future__ import annotations

import pytest

from mlx_manager.errors import EngineUnavailable, ModelLoading, ServerShuttingDown
from mlx_manager.frontend.lifecycle import EngineState, Lifecycle


def test_loading_and_draining_refuse_with_retry_after() -> None:
    lifecycle = Lifecycle()
    with pytest.raises(ModelLoading):
        lifecycle.check_started()
    lifecycle.state = EngineState.READY
    lifecycle.check_started()
    lifecycle.state = EngineState.DRAINING
    with pytest.raises(ServerShuttingDown) as info:
        lifecycle.check_started()
    assert info.value.status == 503 and info.value.anthropic_status == 529
    assert info.value.code == "server_shutting_down" and info.value.headers["Retry-After"]


def test_a_failed_engine_refuses_with_its_reason() -> None:
    lifecycle = Lifecycle()
    lifecycle.fail("the distributed group ended: rank 1 left the group")
    with pytest.raises(EngineUnavailable) as info:
        lifecycle.check_started()
    assert info.value.status == 503 and info.value.code == "engine_unavailable"
    assert "rank 1" in info.value.message and info.value.headers["Retry-After"] == "10"

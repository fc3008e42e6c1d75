"""Typed engine commands: run on the engine thread, answered through a future."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx_manager.config import load_settings
from mlx_manager.engine import commands as cmd
from mlx_manager.engine.loop import EngineThread
from mlx_manager.errors import InternalError
from mlx_manager.models.detection import ModelType


@pytest.fixture
def thread() -> Iterator[EngineThread]:
    engine = EngineThread(load_settings({"kv_cache_gb": 0.002}).engine())
    engine.start()
    yield engine
    engine.stop()


def test_a_load_replies_with_a_card_and_the_weights_stay_on_the_engine(
    thread: EngineThread, tiny_model_dirs: dict[str, Path]
) -> None:
    path = tiny_model_dirs["llama"]
    load = cmd.LoadModel("tiny", path, ModelType.TEXT, None, 2.0, 0)
    result = thread.execute(load).result(timeout=60)
    assert result.card.model_id == "tiny" and not hasattr(result.card, "model")
    assert result.cost.weight_bytes > 0 and result.cost.kv_bytes > 0
    assert thread.execute(cmd.UnloadModel("tiny")).result(timeout=60) is True


def test_commands_run_on_the_engine_thread_and_errors_come_back(thread: EngineThread) -> None:
    seen: list[str] = []
    original = thread._commands.handle

    def spy(command: cmd.Command[object]) -> object:
        seen.append(threading.current_thread().name)
        return original(command)

    thread._commands.handle = spy  # type: ignore[method-assign]
    memory = thread.execute(cmd.ReadMemory()).result(timeout=10)
    assert memory.active_bytes >= 0 and seen == ["mlx-engine"]
    with pytest.raises(InternalError, match="not loaded"):
        thread.execute(cmd.EmbedBatch("nowhere", ((1, 2),))).result(timeout=10)

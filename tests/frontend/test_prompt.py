from __future__ import annotations

import pytest

from mlx_manager.errors import ContextLengthExceeded
from mlx_manager.frontend.prompt import completion_budget


def test_budget_defaults_to_rest_of_context_capped() -> None:
    assert completion_budget(100, None, 1000, 4096) == 900
    assert completion_budget(100, None, 10_000, 4096) == 4096


def test_requested_budget_kept_when_it_fits() -> None:
    assert completion_budget(100, 50, 1000, 4096) == 50


def test_overflow_messages() -> None:
    with pytest.raises(ContextLengthExceeded, match="maximum context length is 1000 tokens"):
        completion_budget(990, 20, 1000, 4096)
    with pytest.raises(ContextLengthExceeded) as info:
        completion_budget(1000, None, 1000, 4096)
    assert info.value.status == 400 and info.value.code == "context_length_exceeded"

from __future__ import annotations

import pytest

from mlx_manager.routing.aliases import AliasTable


def test_alias_table() -> None:
    table = AliasTable.parse(["claude-sonnet-4-6=local", " gpt-4o-mini = other "])
    assert table.resolve("claude-sonnet-4-6") == "local"
    assert table.resolve("gpt-4o-mini") == "other"
    assert table.resolve("local") == "local"
    with pytest.raises(ValueError):
        AliasTable.parse(["nonsense"])

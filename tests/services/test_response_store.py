"""The bounded store of recent responses' conversations (previous_response_id)."""

from __future__ import annotations

import pytest

from mlx_manager.errors import NotFound
from mlx_manager.services.response_store import ResponseStore
from mlx_manager.types import ChatMessage, ToolCall


def turn(text: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage("user", text),)


def test_put_and_get() -> None:
    store = ResponseStore()
    conversation = (
        *turn("hi"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("c", "f", "{}"),)),
    )
    store.put("resp_1", conversation)
    assert store.get("resp_1") == conversation


def test_unknown_id_is_404_in_openai_terms() -> None:
    with pytest.raises(NotFound) as info:
        ResponseStore().get("resp_x")
    error = info.value.openai_body()["error"]
    assert error["code"] == "previous_response_not_found"
    assert error["param"] == "previous_response_id" and "resp_x" in error["message"]
    assert info.value.status == 404


def test_least_recently_used_goes_first() -> None:
    store = ResponseStore(max_entries=2)
    store.put("a", turn("a"))
    store.put("b", turn("b"))
    store.get("a")  # now b is the least recently used
    store.put("c", turn("c"))
    assert len(store) == 2
    assert store.get("a") and store.get("c")
    with pytest.raises(NotFound):
        store.get("b")


def test_character_budget() -> None:
    store = ResponseStore(max_chars=10)
    store.put("a", turn("12345"))
    store.put("b", turn("123456"))  # 11 characters in all: a goes
    with pytest.raises(NotFound):
        store.get("a")
    assert store.get("b")
    store.put("huge", turn("x" * 11))  # larger than the whole store: not kept, nothing dropped
    assert len(store) == 1 and store.get("b")


def test_putting_again_replaces() -> None:
    store = ResponseStore(max_chars=10)
    store.put("a", turn("123456"))
    store.put("a", turn("1234567"))
    assert len(store) == 1 and store.get("a") == turn("1234567")

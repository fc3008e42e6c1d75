"""Which chat-template variables a client may set."""

from __future__ import annotations

import pytest

from mlx_manager.errors import InvalidRequest
from mlx_manager.protocols.template_kwargs import MAX_DEPTH, template_kwargs, thinking_kwargs


def test_client_variables_pass_sorted() -> None:
    assert template_kwargs(None) == () and template_kwargs({}) == ()
    given = {"reasoning_effort": "low", "enable_thinking": False}
    assert template_kwargs(given) == (("enable_thinking", False), ("reasoning_effort", "low"))


@pytest.mark.parametrize("name", ["messages", "tools", "add_generation_prompt", "not-a-name"])
def test_the_servers_own_parameters_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        template_kwargs({name: 1})
    assert info.value.param == "chat_template_kwargs" and name in info.value.message


def test_anthropic_thinking() -> None:
    assert thinking_kwargs("enabled") == (("enable_thinking", True),)
    assert thinking_kwargs("disabled") == (("enable_thinking", False),)
    assert thinking_kwargs("adaptive") == thinking_kwargs(None) == ()


def nested(levels: int) -> dict[str, object]:
    """`chat_template_kwargs` whose own dict is level 1 and `levels` levels in all."""
    value: object = True
    for i in range(levels - 1):
        value = {"a": value} if i % 2 else [value]
    return {"x": value}


def test_nesting_is_capped() -> None:
    assert template_kwargs(nested(MAX_DEPTH)) == (("x", nested(MAX_DEPTH)["x"]),)
    for levels in (MAX_DEPTH + 1, 900, 100_000):
        with pytest.raises(InvalidRequest) as info:
            template_kwargs(nested(levels))
        assert info.value.param == "chat_template_kwargs" and "nested" in info.value.message

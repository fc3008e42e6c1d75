"""Extra chat-template variables a client may set: vLLM's `chat_template_kwargs` (OpenAI
chat) and Anthropic's `thinking` (as `enable_thinking`, the name Qwen3's template reads)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlx_manager.errors import InvalidRequest

# apply_chat_template's own parameters and what the server itself passes: not for clients.
RESERVED = frozenset(
    {
        "add_generation_prompt",
        "chat_template",
        "continue_final_message",
        "conversation",
        "documents",
        "max_length",
        "messages",
        "padding",
        "processor_kwargs",
        "return_assistant_tokens_mask",
        "return_dict",
        "return_tensors",
        "tokenize",
        "tokenizer_kwargs",
        "tools",
        "truncation",
    }
)

# Template variables are flags and small records (enable_thinking, reasoning_effort): a few
# levels suffice, and the template engine recurses into a deep value until Python's stack
# limit (a RecursionError, so a 500) near 900 levels.
MAX_DEPTH = 8


def template_kwargs(kwargs: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """`chat_template_kwargs` as GenerateRequest.template_kwargs; 400 for reserved names."""
    if not kwargs:
        return ()
    bad = sorted(k for k in kwargs if k in RESERVED or not k.isidentifier())
    if bad:
        raise InvalidRequest(
            f"chat_template_kwargs may not set {', '.join(repr(k) for k in bad)}",
            param="chat_template_kwargs",
            code="invalid_value",
        )
    if _depth(kwargs) > MAX_DEPTH:
        raise InvalidRequest(
            f"chat_template_kwargs is nested more than {MAX_DEPTH} levels deep",
            param="chat_template_kwargs",
            code="invalid_value",
        )
    return tuple(sorted(kwargs.items()))


def _depth(value: Any) -> int:
    """Nesting depth of dicts and lists (a scalar is 0); iterative, so any depth is safe."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in item)
    return deepest


def thinking_kwargs(thinking_type: str | None) -> tuple[tuple[str, Any], ...]:
    """Anthropic's `thinking.type`: "enabled" / "disabled" set `enable_thinking`; "adaptive"
    and no `thinking` leave the template's default."""
    if thinking_type == "enabled":
        return (("enable_thinking", True),)
    if thinking_type == "disabled":
        return (("enable_thinking", False),)
    return ()

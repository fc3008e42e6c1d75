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


def template_kwargs(kwargs: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """`chat_template_kwargs` as GenerateRequest.template_kwargs; 400 for reserved names."""
    if not kwargs:
        return ()
    bad = sorted(k for k in kwargs if k in RESERVED or not k.isidentifier())
    if bad:
        raise InvalidRequest(
            f"chat_template_kwargs may not set {', '.join(repr(k) for k in bad)}",
            param="chat_template_kwargs",
        )
    return tuple(sorted(kwargs.items()))


def thinking_kwargs(thinking_type: str | None) -> tuple[tuple[str, Any], ...]:
    """Anthropic's `thinking.type`: "enabled" / "disabled" set `enable_thinking`; "adaptive"
    and no `thinking` leave the template's default."""
    if thinking_type == "enabled":
        return (("enable_thinking", True),)
    if thinking_type == "disabled":
        return (("enable_thinking", False),)
    return ()

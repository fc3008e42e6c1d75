"""GenerateRequest -> prompt token ids and a completion budget, checked against the context."""

from __future__ import annotations

from jinja2 import TemplateError

from mlx_manager.errors import ContextLengthExceeded, InvalidRequest
from mlx_manager.frontend.chat_render import template_inputs
from mlx_manager.frontend.prompt_size import (
    refuse_by_length_or_prefix,
    refuse_certainly_too_long,
    refuse_text_too_long,
)
from mlx_manager.models.card import ModelCard
from mlx_manager.models.tool_formats import ToolFormat
from mlx_manager.types import GenerateRequest


def prompt_ids_for(
    model: ModelCard, request: GenerateRequest, tool_format: ToolFormat | None = None
) -> list[int]:
    if request.prompt_tokens is not None:
        refuse_certainly_too_long(model, len(request.prompt_tokens), "prompt")
        vocab = len(model.tokenizer)
        bad = [t for t in request.prompt_tokens if not 0 <= t < vocab]
        if bad:
            raise InvalidRequest(
                f"prompt token id {bad[0]} is outside the model's vocabulary (0..{vocab - 1})",
                param="prompt",
            )
        return list(request.prompt_tokens)
    if request.messages is not None:
        # Cheap checks first: the message texts alone, then the rendered prompt.
        refuse_text_too_long(model, sum(len(m.content) for m in request.messages), "messages")
        # The template wrote any BOS itself: adding special tokens would double it.
        text = _chat_text(model, request, tool_format)
        refuse_by_length_or_prefix(model, text, "messages")
        if model.prompt_encoder is not None:  # same ids, the start reused from a recent prompt
            return model.prompt_encoder.encode(text)
        return list(model.tokenizer.encode(text, add_special_tokens=False))
    refuse_by_length_or_prefix(model, request.prompt_text or "", "prompt")
    return list(model.tokenizer.encode(request.prompt_text or ""))


def vision_prompt_text(
    model: ModelCard, request: GenerateRequest, tool_format: ToolFormat | None = None
) -> str | None:
    """The prompt text a vision model's processor tokenizes (None: token ids were given).

    Chat contents go to the template as lists of parts, images where the client put them.
    """
    if request.prompt_tokens is not None:
        return None
    if request.messages is not None:
        refuse_text_too_long(model, sum(len(m.content) for m in request.messages), "messages")
    text = (
        _chat_text(model, request, tool_format, content_parts=True)
        if request.messages is not None
        else request.prompt_text or ""
    )
    refuse_text_too_long(model, len(text), "messages" if request.messages else "prompt")
    return text


def _chat_text(
    model: ModelCard,
    request: GenerateRequest,
    tool_format: ToolFormat | None,
    *,
    content_parts: bool = False,
) -> str:
    messages, tools = template_inputs(request, tool_format)
    try:
        return model.family.render_text(
            model.tokenizer,
            messages,
            tools=tools,
            content_parts=content_parts,
            extra=dict(request.template_kwargs),
        )
    except TemplateError as exc:
        raise InvalidRequest(
            f"the model's chat template rejected these messages: {exc}", param="messages"
        ) from exc


def completion_budget(
    prompt_len: int, requested: int | None, context_length: int, default_cap: int
) -> int:
    """How many tokens may be generated; ContextLengthExceeded when the prompt cannot fit."""
    if requested is None:
        if prompt_len >= context_length:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {context_length} tokens. However, your "
                f"messages resulted in {prompt_len} tokens. Please reduce the length of the "
                "messages.",
                param="messages",
                anthropic_message=f"prompt is too long: {prompt_len} tokens > "
                f"{context_length - 1} maximum",
            )
        return min(default_cap, context_length - prompt_len)
    if prompt_len + requested > context_length:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context_length} tokens. However, you "
            f"requested {prompt_len + requested} tokens ({prompt_len} in the messages, "
            f"{requested} in the completion). Please reduce the length of the messages or "
            "completion.",
            param="messages",
            anthropic_message=_anthropic_too_long(prompt_len, requested, context_length),
        )
    return requested


def _anthropic_too_long(prompt_len: int, requested: int, context_length: int) -> str:
    if prompt_len >= context_length:
        return f"prompt is too long: {prompt_len} tokens > {context_length - 1} maximum"
    return (
        f"input length and `max_tokens` exceed context limit: {prompt_len} + {requested} > "
        f"{context_length}, decrease input length or `max_tokens` and try again"
    )

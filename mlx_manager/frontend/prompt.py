"""GenerateRequest -> prompt token ids and a completion budget, checked against the context."""

from __future__ import annotations

from jinja2 import TemplateError

from mlx_manager.errors import ContextLengthExceeded, InvalidRequest
from mlx_manager.frontend.chat_render import template_inputs
from mlx_manager.models.card import ModelCard
from mlx_manager.models.token_bounds import min_tokens_for
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
        # The template wrote any BOS itself: adding special tokens would double it.
        text = _chat_text(model, request, tool_format)
        _refuse_text_too_long(model, text, "messages")
        if model.prompt_encoder is not None:  # same ids, the start reused from a recent prompt
            return model.prompt_encoder.encode(text)
        return list(model.tokenizer.encode(text, add_special_tokens=False))
    _refuse_text_too_long(model, request.prompt_text or "", "prompt")
    return list(model.tokenizer.encode(request.prompt_text or ""))


def vision_prompt_text(
    model: ModelCard, request: GenerateRequest, tool_format: ToolFormat | None = None
) -> str | None:
    """The prompt text a vision model's processor tokenizes (None: token ids were given).

    Chat contents go to the template as lists of parts, images where the client put them.
    """
    if request.prompt_tokens is not None:
        return None
    text = (
        _chat_text(model, request, tool_format, content_parts=True)
        if request.messages is not None
        else request.prompt_text or ""
    )
    _refuse_text_too_long(model, text, "messages" if request.messages is not None else "prompt")
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


def _refuse_text_too_long(model: ModelCard, text: str, param: str) -> None:
    """Refuse, before tokenizing it, a text that cannot fit whatever its tokens."""
    refuse_certainly_too_long(model, min_tokens_for(len(text), model.max_token_chars), param)


def refuse_certainly_too_long(model: ModelCard, min_tokens: int, param: str) -> None:
    """ContextLengthExceeded when a prompt has at least `min_tokens` >= the context."""
    context_length = model.context_length
    if min_tokens < context_length:
        return
    raise ContextLengthExceeded(
        f"This model's maximum context length is {context_length} tokens. However, your "
        f"{'messages' if param == 'messages' else 'prompt'} resulted in at least {min_tokens} "
        "tokens. Please reduce the length of the prompt.",
        param=param,
        anthropic_message=f"prompt is too long: at least {min_tokens} tokens > "
        f"{context_length - 1} maximum",
    )


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

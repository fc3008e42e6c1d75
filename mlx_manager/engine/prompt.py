"""GenerateRequest -> prompt token ids and a completion budget, checked against the context."""

from __future__ import annotations

from jinja2 import TemplateError

from mlx_manager.errors import ContextLengthExceeded, InvalidRequest
from mlx_manager.models.loaded import LoadedModel
from mlx_manager.types import GenerateRequest


def prompt_ids_for(model: LoadedModel, request: GenerateRequest) -> list[int]:
    if request.prompt_tokens is not None:
        vocab = len(model.tokenizer)
        bad = [t for t in request.prompt_tokens if not 0 <= t < vocab]
        if bad:
            raise InvalidRequest(
                f"prompt token id {bad[0]} is outside the model's vocabulary (0..{vocab - 1})",
                param="prompt",
            )
        return list(request.prompt_tokens)
    if request.messages is not None:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        try:
            return model.family.render_prompt(model.tokenizer, messages)
        except TemplateError as exc:
            raise InvalidRequest(
                f"the model's chat template rejected these messages: {exc}", param="messages"
            ) from exc
    return list(model.tokenizer.encode(request.prompt_text or ""))


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
            )
        return min(default_cap, context_length - prompt_len)
    if prompt_len + requested > context_length:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context_length} tokens. However, you "
            f"requested {prompt_len + requested} tokens ({prompt_len} in the messages, "
            f"{requested} in the completion). Please reduce the length of the messages or "
            "completion.",
            param="messages",
        )
    return requested

"""Everything a chat request needs beyond sampling: prompt with tools, grammar, output parser.

``prepare`` runs in the engine client before anything is queued, so a schema that cannot be
enforced or a tool_choice naming no tool is a 400 before a stream starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mlx_manager.errors import InvalidRequest
from mlx_manager.frontend.constraints import build_constraint
from mlx_manager.frontend.output_parser import OutputParser
from mlx_manager.frontend.prompt import prompt_ids_for
from mlx_manager.models.card import ModelCard
from mlx_manager.models.tool_formats import ToolFormat, tool_format_for
from mlx_manager.types import GenerateRequest, SamplingParams, ToolChoiceMode


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    prompt_ids: list[int]
    sampling: SamplingParams
    parser: OutputParser | None


def tool_format_of(model: ModelCard, request: GenerateRequest) -> ToolFormat | None:
    uses_tools = bool(request.tools) or any(
        m.tool_calls or m.role == "tool" for m in request.messages or ()
    )
    if not uses_tools:
        return None
    return tool_format_for(model.tokenizer, model.family.name)


def prepare(
    model: ModelCard, request: GenerateRequest, prompt_ids: list[int] | None = None
) -> PreparedRequest:
    """`prompt_ids`: already tokenized (vision processors do it); else rendered here."""
    check_logit_bias(model, request.sampling)
    fmt = tool_format_of(model, request)
    if prompt_ids is None:
        prompt_ids = prompt_ids_for(model, request, fmt)
    constraint = build_constraint(model, request, fmt)
    sampling = request.sampling
    if constraint is not None:
        sampling = dataclasses.replace(sampling, constraint=constraint)
    parser = _parser(model, request, fmt, prompt_ids, constrained=constraint is not None)
    return PreparedRequest(prompt_ids, sampling, parser)


def check_logit_bias(model: ModelCard, sampling: SamplingParams) -> None:
    """400 for a biased token id the model does not have: the sampler would skip it, and the
    client would never learn that its bias did nothing (OpenAI answers 400 too)."""
    if not sampling.logit_bias:
        return
    vocab = len(model.tokenizer)
    bad = [token for token, _ in sampling.logit_bias if not 0 <= token < vocab]
    if bad:
        raise InvalidRequest(
            f"logit_bias token id {bad[0]} is outside the model's vocabulary (0..{vocab - 1})",
            param="logit_bias",
        )


def _parser(
    model: ModelCard,
    request: GenerateRequest,
    fmt: ToolFormat | None,
    prompt_ids: list[int],
    constrained: bool = False,
) -> OutputParser | None:
    if request.messages is None:
        return None  # raw completions are returned as generated
    tokenizer = model.tokenizer
    think = None
    in_reasoning = False
    if getattr(tokenizer, "has_thinking", False):
        think = (tokenizer.think_start, tokenizer.think_end)
        # A grammar starts the reply at once (no thinking block), whatever the prompt ends on.
        in_reasoning = not constrained and tokenizer.rfind_think_start(
            prompt_ids
        ) > tokenizer.rfind_think_end(prompt_ids)
    calls = request.tools and request.tool_choice.mode is not ToolChoiceMode.NONE
    if think is None and not calls:
        return None
    return OutputParser(fmt if calls else None, think, in_reasoning)

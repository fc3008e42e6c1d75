"""Anthropic Messages API wire schemas for requests (pydantic).

Unknown fields are rejected, as Anthropic's API does; hints are accepted and reported, missing
capabilities (MCP servers, Anthropic-defined tools) refused by name (protocols/field_policy.py).
``cache_control`` and ``citations`` are accepted on every block that may carry them (prompt
caching is automatic here).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlx_manager.protocols.field_policy import (
    ANTHROPIC_MESSAGES,
    ANTHROPIC_TOOL,
    UNAPPLIED_CONTEXT_EDITS,
    FieldPolicy,
    PolicedModel,
    capability_error,
)
from mlx_manager.protocols.fields import ModelName


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Block(_Strict):
    cache_control: dict[str, Any] | None = None


class TextBlock(_Block):
    type: Literal["text"]
    text: str
    citations: list[dict[str, Any]] | None = None


class ImageBlock(_Block):
    type: Literal["image"]
    source: dict[str, Any]


class DocumentBlock(_Block):
    type: Literal["document"]
    source: dict[str, Any]
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    caller: dict[str, Any] | None = None  # set by Anthropic's server tools; echoed back
    toolset_name: str | None = None


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | None = None
    is_error: bool | None = None
    toolset_name: str | None = None


class ThinkingBlock(_Block):
    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(_Block):
    type: Literal["redacted_thinking"]
    data: str


ContentBlock = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock,
    Field(discriminator="type"),
]


class MessageIn(_Strict):
    # "system" mid-conversation: Claude Code sends one with non-Claude model names.
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class ToolIn(PolicedModel):
    field_policy: ClassVar[FieldPolicy] = ANTHROPIC_TOOL
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _custom_tools_only(cls, data: Any) -> Any:
        """Anthropic-defined tools (web_search_*, bash_*, text_editor_*, code_execution_*,
        computer_*, ...) run on Anthropic's side or need its built-in schemas."""
        kind = data.get("type") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind != "custom":
            raise capability_error(
                "type",
                f"the server tool {kind!r}",
                "send custom tools (name, description, input_schema)",
            )
        return data


class ToolChoiceIn(_Strict):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(_Strict):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(None, ge=0)


class Metadata(_Strict):
    user_id: str | None = None


class JsonOutputFormat(_Strict):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Strict):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None  # a hint; ignored
    format: JsonOutputFormat | None = None


class ClearThinkingEdit(_Strict):
    type: Literal["clear_thinking_20251015"]
    keep: Literal["all"] | dict[str, Any] | None = None


class ClearToolUsesEdit(_Strict):
    type: Literal["clear_tool_uses_20250919"]
    trigger: dict[str, Any] | None = None
    keep: dict[str, Any] | None = None
    clear_at_least: dict[str, Any] | None = None
    exclude_tools: list[str] | None = None
    clear_tool_inputs: bool | list[str] | None = None


class ContextManagement(_Strict):
    edits: (
        list[Annotated[ClearThinkingEdit | ClearToolUsesEdit, Field(discriminator="type")]] | None
    ) = None


class _PromptFields(PolicedModel):
    field_policy: ClassVar[FieldPolicy] = ANTHROPIC_MESSAGES
    model: ModelName
    messages: list[MessageIn] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoiceIn | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None
    context_management: ContextManagement | None = None
    cache_control: dict[str, Any] | None = None  # honoured: prefix caching is automatic

    def ignored_fields(self) -> tuple[str, ...]:
        names = list(self._ignored)
        names += [f"tools[].{name}" for tool in self.tools or () for name in tool.ignored_fields()]
        edits = self.context_management.edits if self.context_management else None
        names += [
            f"context_management.edits[].{e.type}"
            for e in edits or ()
            if e.type in UNAPPLIED_CONTEXT_EDITS
        ]
        return tuple(dict.fromkeys(names))


class CountTokensRequest(_PromptFields):
    pass


class MessagesRequest(_PromptFields):
    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    metadata: Metadata | None = None  # a hint (field_policy): validated, reported as ignored

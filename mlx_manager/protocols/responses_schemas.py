"""OpenAI Responses API wire schemas for requests (pydantic).

The request itself rejects unknown fields, as the other dialects do. Input items and content
parts that a client echoes back from an earlier response (messages with ``output_text``,
``function_call``, ``reasoning``) ignore fields they do not use, so a newer SDK's extra output
fields round-trip. An item, part or tool of a kind the server does not serve parses as
``Other*`` and the converter refuses it by name (a 400 naming the type, not pydantic's tag error).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from mlx_manager.protocols.fields import ModelName


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Echoed(BaseModel):
    """Shapes a client sends back from an earlier response: unused fields are ignored."""

    model_config = ConfigDict(extra="ignore")


class _Other(BaseModel):
    """A kind the server does not serve; kept whole so the converter can name it."""

    model_config = ConfigDict(extra="allow")
    type: str


def _kind(default: str, known: frozenset[str]) -> Any:
    """A discriminator over ``type`` (``default`` when absent); unknown kinds map to "other"."""

    def tag(value: Any) -> str:
        if isinstance(value, dict):
            kind = value.get("type", default)
        else:
            kind = getattr(value, "type", None)
        return kind if kind in known else "other"

    return Discriminator(tag)


# --- content parts -----------------------------------------------------------------------


class InputTextPart(_Strict):
    type: Literal["input_text"]
    text: str


class OutputTextPart(_Echoed):
    type: Literal["output_text"]
    text: str


class RefusalPart(_Echoed):
    type: Literal["refusal"]
    refusal: str


class InputImagePart(_Strict):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None


class OtherPart(_Other):
    pass


_PART_KINDS = frozenset({"input_text", "output_text", "refusal", "input_image"})
ContentPart = Annotated[
    Annotated[InputTextPart, Tag("input_text")]
    | Annotated[OutputTextPart, Tag("output_text")]
    | Annotated[RefusalPart, Tag("refusal")]
    | Annotated[InputImagePart, Tag("input_image")]
    | Annotated[OtherPart, Tag("other")],
    _kind("input_text", _PART_KINDS),
]


# --- input items -------------------------------------------------------------------------


class MessageItem(_Echoed):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]


class FunctionCallItem(_Echoed):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    namespace: str | None = None


class FunctionCallOutputItem(_Echoed):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ContentPart]


class CustomToolCallItem(_Echoed):
    """A call of a custom (freeform) tool: its input is one string."""

    type: Literal["custom_tool_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: str
    namespace: str | None = None


class CustomToolCallOutputItem(_Echoed):
    type: Literal["custom_tool_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ContentPart]


class ToolSearchCallItem(_Echoed):
    """A call of a client-executed tool search (Codex): its arguments are an object."""

    type: Literal["tool_search_call"]
    id: str | None = None
    call_id: str | None = None
    arguments: Any = None


class ToolSearchOutputItem(_Echoed):
    """The tools a client's tool search found."""

    type: Literal["tool_search_output"]
    id: str | None = None
    call_id: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)


class ReasoningItem(_Echoed):
    type: Literal["reasoning"]


class OtherItem(_Other):
    pass


_ITEM_KINDS = frozenset(
    {
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "tool_search_call",
        "tool_search_output",
        "reasoning",
    }
)
InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[CustomToolCallItem, Tag("custom_tool_call")]
    | Annotated[CustomToolCallOutputItem, Tag("custom_tool_call_output")]
    | Annotated[ToolSearchCallItem, Tag("tool_search_call")]
    | Annotated[ToolSearchOutputItem, Tag("tool_search_output")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[OtherItem, Tag("other")],
    _kind("message", _ITEM_KINDS),
]


# --- tools -------------------------------------------------------------------------------


class FunctionTool(_Strict):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    defer_loading: bool | None = None  # a hint for OpenAI's tool search; every tool is loaded


class CustomToolFormat(_Strict):
    """How a custom tool's input is written: free text, or a grammar (lark or regex)."""

    type: Literal["text", "grammar"]
    syntax: Literal["lark", "regex"] | None = None
    definition: str | None = None


class CustomTool(_Strict):
    """A freeform tool (Codex's ``apply_patch``): the model writes its input as one string.
    Served as a function taking ``{"input": string}`` (see responses_convert)."""

    type: Literal["custom"]
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    format: CustomToolFormat | None = None
    defer_loading: bool | None = None  # a hint for OpenAI's tool search; every tool is loaded


class ToolSearchTool(_Strict):
    """Tool search over deferred tools; only one the client runs (``execution: "client"``,
    as Codex sends) is served: as a function named ``tool_search``."""

    type: Literal["tool_search"]
    execution: Literal["server", "client"] | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None


class OtherTool(_Other):
    pass


_NESTED_KINDS = frozenset({"function", "custom"})
NestedTool = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[CustomTool, Tag("custom")]
    | Annotated[OtherTool, Tag("other")],
    _kind("function", _NESTED_KINDS),
]


class NamespaceTool(_Strict):
    """A group of tools under one name (newer Codex): served as flat functions."""

    type: Literal["namespace"]
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    tools: list[NestedTool]


_TOOL_KINDS = frozenset({"function", "custom", "tool_search", "namespace"})
Tool = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[CustomTool, Tag("custom")]
    | Annotated[ToolSearchTool, Tag("tool_search")]
    | Annotated[NamespaceTool, Tag("namespace")]
    | Annotated[OtherTool, Tag("other")],
    _kind("function", _TOOL_KINDS),
]


class FunctionChoice(_Strict):
    type: Literal["function"]
    name: str
    namespace: str | None = None  # a function of a namespace tool


class CustomChoice(_Strict):
    type: Literal["custom"]
    name: str
    namespace: str | None = None


class OtherChoice(_Other):
    pass


ToolChoiceIn = Annotated[
    Annotated[FunctionChoice, Tag("function")]
    | Annotated[CustomChoice, Tag("custom")]
    | Annotated[OtherChoice, Tag("other")],
    _kind("function", frozenset({"function", "custom"})),
]


# --- text format and reasoning -----------------------------------------------------------


class TextFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextConfig(_Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None  # a hint


Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class ReasoningConfig(_Strict):
    effort: Effort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None  # no summaries are made
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(_Strict):
    include_obfuscation: bool | None = None  # nothing to obfuscate here


# --- the request -------------------------------------------------------------------------


class ResponsesRequest(_Strict):
    model: ModelName
    input: str | list[InputItem]
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceIn | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    # Refused with a message naming them (the converter): state the server does not keep.
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    # Hints that change nothing a local server must honour.
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    safety_identifier: str | None = None
    max_tool_calls: int | None = Field(None, ge=1)
    client_metadata: dict[str, Any] | None = None  # Codex: its turn and session ids

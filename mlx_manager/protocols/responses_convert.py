"""Pure converters from OpenAI Responses requests to internal types (no I/O, no engine).

A peer of openai_convert and anthropic_convert over the same internal types. Decisions:
- ``instructions`` is a system message ahead of everything; it is not part of the
  conversation that ``previous_response_id`` carries on (as OpenAI does).
- ``function_call`` items are the assistant's tool calls (joined onto the assistant message
  before them), ``function_call_output`` items ``tool`` messages; ``reasoning`` items are not
  fed back (as thinking blocks are not, in the other dialects).
- ``custom`` (freeform) tools, Codex's ``apply_patch``, are served as functions taking one
  string, ``{"input": string}`` (`CUSTOM_INPUT`), their format (a lark or regex grammar)
  shown to the model in the description, not enforced; a call of one goes back out as a
  ``custom_tool_call`` item with that string as its ``input``, and ``custom_tool_call`` /
  ``custom_tool_call_output`` input items come in as the same call and result.
- A ``tool_search`` tool the client runs (``execution: "client"``, Codex's) is a function named
  ``tool_search`` with the tool's parameters; a call of it goes out as a ``tool_search_call``
  item (arguments as an object), and ``tool_search_call`` / ``tool_search_output`` input items
  come in as that call and its result (the tools found, as JSON text). The tools found are
  shown to the model in that result, not added to the tool list. A server-run tool search is
  a hosted tool.
- ``namespace`` tools are served as flat functions named ``<namespace>__<name>`` (the
  namespace's own trailing separator is kept when it has one, as Codex's ``mcp__server__``);
  `NamespaceMap` turns a flat name back into the pair for output items.
- Hosted tools (web search, file search, MCP, code interpreter, ...) are a 400 naming them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlx_manager.errors import InvalidRequest, UnsupportedParameter
from mlx_manager.protocols.responses_schemas import (
    ContentPart,
    CustomChoice,
    CustomTool,
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    FunctionTool,
    InputImagePart,
    InputTextPart,
    MessageItem,
    NamespaceTool,
    OtherChoice,
    OtherItem,
    OutputTextPart,
    RefusalPart,
    ResponsesRequest,
    TextConfig,
    ToolSearchCallItem,
    ToolSearchOutputItem,
    ToolSearchTool,
)
from mlx_manager.types import (
    ChatMessage,
    ContentPiece,
    GenerateRequest,
    ImageRef,
    ResponseFormat,
    SamplingParams,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    ToolSpec,
)

# Flat function name -> (namespace, name inside it).
NamespaceMap = Mapping[str, tuple[str, str]]


def responses_request_to_internal(
    body: ResponsesRequest, request_id: str, conversation: Sequence[ChatMessage]
) -> GenerateRequest:
    """The generation for `body`, whose conversation (earlier turns named by
    ``previous_response_id``, then this request's input) is `conversation`."""
    _refuse_stateful(body)
    tools = tool_specs(body)
    system = (ChatMessage("system", body.instructions),) if body.instructions else ()
    sampling = SamplingParams(
        max_tokens=body.max_output_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
    )
    return GenerateRequest(
        request_id,
        body.model,
        sampling,
        messages=(*system, *conversation),
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice, tools),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body.text),
        template_kwargs=effort_kwargs(body),
        stream=bool(body.stream),
    )


def _refuse_stateful(body: ResponsesRequest) -> None:
    if body.background:
        raise UnsupportedParameter(
            "background responses are not supported; send the request without it",
            param="background",
        )
    if body.conversation is not None:
        raise UnsupportedParameter(
            "conversations are not stored here; use previous_response_id or send the items",
            param="conversation",
        )
    if body.prompt is not None:
        raise UnsupportedParameter(
            "stored prompts are not supported; send instructions and input", param="prompt"
        )


def effort_kwargs(body: ResponsesRequest) -> tuple[tuple[str, Any], ...]:
    """``reasoning.effort: "none"`` switches a template's thinking off (``enable_thinking``,
    the switch of Qwen3-style templates); other efforts leave the template's default."""
    if body.reasoning is not None and body.reasoning.effort == "none":
        return (("enable_thinking", False),)
    return ()


# --- input -------------------------------------------------------------------------------


def input_messages(body: ResponsesRequest) -> tuple[ChatMessage, ...]:
    """This request's input as chat messages (without ``instructions``)."""
    if isinstance(body.input, str):
        if not body.input:
            raise InvalidRequest("input must not be empty", param="input")
        return (ChatMessage("user", body.input),)
    if not body.input:
        raise InvalidRequest("input must not be empty", param="input", code="empty_array")
    messages: list[ChatMessage] = []
    call_names: dict[str, str] = {}
    for index, item in enumerate(body.input):
        where = f"input[{index}]"
        if isinstance(item, MessageItem):
            messages.append(_message(item, where))
        elif isinstance(item, FunctionCallItem):
            name = flat_name(item.namespace, item.name) if item.namespace else item.name
            call_names[item.call_id] = name
            _add_call(messages, ToolCall(item.call_id, name, item.arguments))
        elif isinstance(item, CustomToolCallItem):
            name = flat_name(item.namespace, item.name) if item.namespace else item.name
            call_names[item.call_id] = name
            _add_call(messages, ToolCall(item.call_id, name, custom_arguments(item.input)))
        elif isinstance(item, ToolSearchCallItem):
            call_id = item.call_id or item.id or TOOL_SEARCH
            call_names[call_id] = TOOL_SEARCH
            arguments = json.dumps(item.arguments or {}, ensure_ascii=False)
            _add_call(messages, ToolCall(call_id, TOOL_SEARCH, arguments))
        elif isinstance(item, ToolSearchOutputItem):
            call_id = item.call_id or item.id or TOOL_SEARCH
            text = json.dumps(item.tools, ensure_ascii=False)
            messages.append(ChatMessage("tool", text, tool_call_id=call_id, name=TOOL_SEARCH))
        elif isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem):
            text = _output_text(item.output, f"{where}.output")
            called = call_names.get(item.call_id)
            messages.append(ChatMessage("tool", text, tool_call_id=item.call_id, name=called))
        elif isinstance(item, OtherItem):
            raise _unsupported_item(item, where)
        # reasoning items: not fed back
    return tuple(messages)


def _add_call(messages: list[ChatMessage], call: ToolCall) -> None:
    """A call joins the assistant turn before it (its text, its other calls)."""
    if messages and messages[-1].role == "assistant":
        last = messages[-1]
        messages[-1] = dataclasses.replace(last, tool_calls=(*last.tool_calls, call))
    else:
        messages.append(ChatMessage("assistant", "", tool_calls=(call,)))


def _unsupported_item(item: OtherItem, where: str) -> UnsupportedParameter:
    if item.type == "item_reference":
        message = f"{where}: item references are not supported; send the item itself"
    else:
        message = (
            f"{where}: {item.type!r} items are not supported (message, function_call, "
            "function_call_output, custom_tool_call, custom_tool_call_output, tool_search_call, "
            "tool_search_output and reasoning items are)"
        )
    return UnsupportedParameter(message, param=f"{where}.type")


def _message(item: MessageItem, where: str) -> ChatMessage:
    if isinstance(item.content, str):
        return ChatMessage(item.role, item.content)
    pieces = [
        _piece(part, item.role, f"{where}.content[{j}]") for j, part in enumerate(item.content)
    ]
    text = "\n".join(p for p in pieces if isinstance(p, str))
    has_images = any(isinstance(p, ImageRef) for p in pieces)
    return ChatMessage(item.role, text, parts=tuple(pieces) if has_images else ())


def _piece(part: ContentPart, role: str, path: str) -> ContentPiece:
    if isinstance(part, InputTextPart | OutputTextPart):
        return part.text
    if isinstance(part, RefusalPart):
        return part.refusal
    if isinstance(part, InputImagePart) and role == "user":
        return _image_ref(part, path)
    kind = part.type
    if kind == "input_image":
        raise InvalidRequest(
            f"{path} is an input_image part; images are accepted in user messages only",
            param=path,
        )
    raise UnsupportedParameter(
        f"{path} is a {kind!r} part, which is not supported (input_text, output_text, "
        "refusal, and input_image in user messages for vision models)",
        param=f"{path}.type",
    )


def _image_ref(part: InputImagePart, path: str) -> ImageRef:
    if part.file_id is not None:
        raise UnsupportedParameter(
            f"{path}.file_id: uploaded files are not supported; send image_url "
            "(an http(s) or data: URL)",
            param=f"{path}.file_id",
        )
    if not part.image_url:
        raise InvalidRequest(f"{path}.image_url must be a URL string", param=f"{path}.image_url")
    # `detail` is a hint; images are always processed at the model's own resolution.
    return ImageRef(part.image_url, f"{path}.image_url")


def _output_text(output: str | list[ContentPart], where: str) -> str:
    if isinstance(output, str):
        return output
    texts = []
    for j, part in enumerate(output):
        piece = _piece(part, "tool", f"{where}[{j}]")
        assert isinstance(piece, str)  # images were refused for role "tool"
        texts.append(piece)
    return "\n".join(texts)


# --- tools -------------------------------------------------------------------------------


def flat_name(namespace: str, name: str) -> str:
    separator = "" if namespace.endswith(("_", ".", "-", "/")) else "__"
    return f"{namespace}{separator}{name}"


# The parameters of a custom tool served as a function: its input, one string.
CUSTOM_INPUT = "input"
# The function a client-run tool search is served as.
TOOL_SEARCH = "tool_search"
TOOL_SEARCH_PARAMETERS = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to search the tools for."}},
    "required": ["query"],
}
# The output item of a call, by how its tool was sent (a function's is "function_call").
CALL_ITEMS = {"custom": "custom_tool_call", "tool_search": "tool_search_call"}


def custom_arguments(text: str) -> str:
    """A custom tool's input as the arguments of the function it is served as."""
    return json.dumps({CUSTOM_INPUT: text}, ensure_ascii=False)


def custom_input(arguments: str) -> str:
    """The input of a custom tool's call, from the arguments the model wrote (as they are
    when they are not an object holding a string input, e.g. cut short)."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(CUSTOM_INPUT), str):
        return str(value[CUSTOM_INPUT])
    return arguments


def _custom_spec(tool: CustomTool, name: str) -> ToolSpec:
    fmt = tool.format
    about = "The input, as free text."
    if fmt is not None and fmt.type == "grammar" and fmt.definition:
        syntax = fmt.syntax or "lark"
        about = f"The input, as text matching this {syntax} grammar:\n{fmt.definition}"
    parameters = {
        "type": "object",
        "properties": {CUSTOM_INPUT: {"type": "string", "description": about}},
        "required": [CUSTOM_INPUT],
        "additionalProperties": False,
    }
    return ToolSpec(name, tool.description or "", parameters)


Served = FunctionTool | CustomTool | ToolSearchTool


def _functions(body: ResponsesRequest) -> Iterable[tuple[Served, str | None]]:
    """Every tool served as a function, with its namespace (None at the top level); 400 for
    other kinds."""
    for i, tool in enumerate(body.tools or ()):
        if isinstance(tool, FunctionTool | CustomTool):
            yield tool, None
        elif isinstance(tool, ToolSearchTool):
            if tool.execution != "client":
                raise UnsupportedParameter(
                    f"tools[{i}]: a tool search the server runs is not supported; send "
                    '"execution": "client" to run it yourself, or the tools themselves',
                    param=f"tools[{i}].execution",
                )
            yield tool, None
        elif isinstance(tool, NamespaceTool):
            for j, inner in enumerate(tool.tools):
                if not isinstance(inner, FunctionTool | CustomTool):
                    raise _unsupported_tool(inner.type, f"tools[{i}].tools[{j}]")
                yield inner, tool.name
        else:
            raise _unsupported_tool(tool.type, f"tools[{i}]")


def _unsupported_tool(kind: str, where: str) -> UnsupportedParameter:
    return UnsupportedParameter(
        f"{where}: {kind!r} tools are not supported here; only function and custom tools "
        "(and namespaces of them) and a client-run tool_search are, and the client runs them",
        param=f"{where}.type",
    )


def tool_specs(body: ResponsesRequest) -> tuple[ToolSpec, ...]:
    specs = []
    for tool, namespace in _functions(body):
        if isinstance(tool, ToolSearchTool):
            parameters = tool.parameters or TOOL_SEARCH_PARAMETERS
            specs.append(ToolSpec(TOOL_SEARCH, tool.description or "", parameters))
            continue
        name = tool.name if namespace is None else flat_name(namespace, tool.name)
        if isinstance(tool, CustomTool):
            specs.append(_custom_spec(tool, name))
        else:
            specs.append(ToolSpec(name, tool.description or "", tool.parameters or {}))
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise InvalidRequest(f"tools: two functions are named {spec.name!r}", param="tools")
        seen.add(spec.name)
    return tuple(specs)


def namespace_map(body: ResponsesRequest) -> dict[str, tuple[str, str]]:
    """Flat name -> (namespace, name) of every namespaced function."""
    return {
        flat_name(namespace, tool.name): (namespace, tool.name)
        for tool, namespace in _functions(body)
        if namespace is not None and not isinstance(tool, ToolSearchTool)
    }


def call_item_types(body: ResponsesRequest) -> dict[str, str]:
    """Flat name -> output item type of the tools whose calls are not ``function_call``s:
    ``custom_tool_call`` for custom tools, ``tool_search_call`` for a client tool search."""
    types = {}
    for tool, namespace in _functions(body):
        if isinstance(tool, ToolSearchTool):
            types[TOOL_SEARCH] = CALL_ITEMS[tool.type]
        elif isinstance(tool, CustomTool):
            name = tool.name if namespace is None else flat_name(namespace, tool.name)
            types[name] = CALL_ITEMS[tool.type]
    return types


def _tool_choice(
    choice: str | FunctionChoice | CustomChoice | OtherChoice | None,
    tools: tuple[ToolSpec, ...],
) -> ToolChoice:
    if choice is None or choice == "auto":
        return ToolChoice()
    if choice == "none":
        return ToolChoice(ToolChoiceMode.NONE)
    if isinstance(choice, OtherChoice):
        raise UnsupportedParameter(
            f"tool_choice of type {choice.type!r} is not supported (auto, none, required, "
            "or a function or custom tool by name)",
            param="tool_choice.type",
        )
    if not tools:
        raise InvalidRequest("tool_choice requires tools", param="tool_choice")
    if choice == "required":
        return ToolChoice(ToolChoiceMode.REQUIRED)
    assert isinstance(choice, FunctionChoice | CustomChoice)
    name = flat_name(choice.namespace, choice.name) if choice.namespace else choice.name
    if not any(t.name == name for t in tools):
        raise InvalidRequest(
            f"tool_choice names {choice.type} {name!r}, which is not in tools",
            param="tool_choice.name",
        )
    return ToolChoice(ToolChoiceMode.NAMED, name)


def _response_format(text: TextConfig | None) -> ResponseFormat | None:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ResponseFormat()
    if fmt.schema_ is None:
        raise InvalidRequest(
            "text.format of type json_schema requires 'schema'",
            param="text.format.schema",
            code="missing_required_parameter",
        )
    if not fmt.name:
        raise InvalidRequest(
            "text.format of type json_schema requires 'name'",
            param="text.format.name",
            code="missing_required_parameter",
        )
    return ResponseFormat(fmt.schema_, fmt.name)

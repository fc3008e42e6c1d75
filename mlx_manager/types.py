"""Internal request and event types shared by the protocol layer and the engine.

Plain dataclasses: the wire schemas (pydantic) live in `protocols/`, and converters map
between the two, so the engine never sees a protocol's JSON.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlx_manager.errors import ErrorInfo


class FinishReason(enum.StrEnum):
    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"
    ERROR = "error"
    TOOL_CALLS = "tool_calls"  # set by the output parser when the reply is tool calls


@dataclass(frozen=True, slots=True)
class Constraint:
    """A grammar the completion must match, enforced while sampling (constrained decoding).

    `grammar` is an llguidance grammar, as text: the engine thread compiles it against its
    model's tokenizer (`models.grammar_tokenizer`).
    """

    grammar: str


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens. Defaults are the OpenAI API's."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    constraint: Constraint | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as text


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call as it decodes, for streamed replies: the first piece of call
    `index` (0, 1, ... in the reply) carries its id and name, later ones only more of its
    arguments' JSON text. Joined, a call's pieces give its arguments as generated."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call; `parameters` is a JSON Schema of its arguments."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict, compare=False)


class ToolChoiceMode(enum.StrEnum):
    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"  # some tool (Anthropic "any")
    NAMED = "named"  # the tool named in ToolChoice.name


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """Structured output: any JSON object (`schema` None) or JSON matching `schema`."""

    schema: Mapping[str, Any] | None = field(default=None, compare=False)
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An image as the client gave it: a ``data:`` URL or an http(s) URL, fetched later."""

    url: str
    param: str  # where in the request it came from, for error messages


# A piece of a message's content, in the client's order: text or an image.
ContentPiece = str | ImageRef


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # system, user, assistant, tool
    content: str  # the text parts, joined (what text-only models see)
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # role "tool": the call this answers
    name: str | None = None
    parts: tuple[ContentPiece, ...] = ()  # text and images in order; set when there are images

    @property
    def images(self) -> tuple[ImageRef, ...]:
        return tuple(p for p in self.parts if isinstance(p, ImageRef))


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """One generation: a prompt given as chat messages or as raw text/token ids."""

    request_id: str
    model: str
    sampling: SamplingParams
    messages: tuple[ChatMessage, ...] | None = None
    prompt_text: str | None = None
    prompt_tokens: tuple[int, ...] | None = None
    echo: bool = False
    priority: int = 0  # lower runs first (vLLM's convention)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = ToolChoice()
    parallel_tool_calls: bool | None = None  # None: the client did not say
    response_format: ResponseFormat | None = None
    # Extra variables for the chat template (vLLM's chat_template_kwargs; Anthropic's
    # `thinking` as enable_thinking), e.g. {"enable_thinking": False} for Qwen3.
    template_kwargs: tuple[tuple[str, Any], ...] = ()
    # The caller reads the answer as a stream. False: an upstream may be asked for the whole
    # answer at once (routing/providers/whole_answer.py), which costs the router less.
    stream: bool = True

    @property
    def images(self) -> tuple[ImageRef, ...]:
        """Every image of every message, in order."""
        return tuple(image for m in self.messages or () for image in m.images)


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    token_id: int
    logprob: float
    top: tuple[tuple[str, int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Timings:
    """When the local engine handled a request, in `time.monotonic()` seconds: handed to the
    engine, first scheduled, first token sampled, finished. Carried by the last event (for
    tracing); None where the request never got that far. Taken once per request, never per
    token."""

    queued: float
    scheduled: float | None = None
    first_token: float | None = None
    finished: float | None = None


@dataclass(frozen=True, slots=True)
class GenerationEvent:
    """A piece of output for one request: new text, and on the last event why it ended.

    `logprobs` holds one entry per token that produced this text (tokens whose text is held
    back, e.g. a possible stop-sequence prefix, report with the text that releases them).
    """

    request_id: str
    text: str = ""
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    error: ErrorInfo | None = None  # set on a failed request's last event
    stop_sequence: str | None = None  # the stop string that ended generation
    reasoning: str = ""  # thinking text, split from `text` by the output parser
    tool_calls: tuple[ToolCall, ...] = ()  # complete calls parsed from the output
    # The same calls piece by piece as they decode (streamed replies use these, whole
    # replies `tool_calls`); every call in `tool_calls` has had its pieces by then.
    tool_call_deltas: tuple[ToolCallDelta, ...] = ()
    timings: Timings | None = None  # the local engine's, on the last event

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class EventStream(Protocol):
    """One submitted request's events, whoever answers it (the local engine, an upstream).

    Iterating yields its events up to the last (`finished`); leaving early, or `abort()`,
    stops the generation.
    """

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the prompt as the model sees it (known before the first event)."""
        ...

    def __aiter__(self) -> AsyncIterator[GenerationEvent]: ...

    def abort(self) -> None: ...


class PassThroughStream:
    """An event stream around another, for watchers (metrics, tracing, the audit log, key
    scopes): the prompt's size and abort() pass through; a subclass's `_events` sees each
    event of `_stream` on its way."""

    def __init__(self, stream: EventStream) -> None:
        self._stream = stream

    @property
    def prompt_tokens(self) -> int:
        return self._stream.prompt_tokens

    def abort(self) -> None:
        self._stream.abort()

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    def _events(self) -> AsyncIterator[GenerationEvent]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the API shows about a served model."""

    model_id: str
    created: int
    context_length: int
    family: str
    path: str
    model_type: str = "text"  # text, vision, embeddings
    size_bytes: int = 0  # on disk
    loaded: bool = True
    pinned: bool = False


def merge_events(events: list[GenerationEvent]) -> GenerationEvent:
    """Consecutive events of one request as one (text, tokens and logprobs joined; the end,
    usage and error of the last). Lets a slow reader send one chunk instead of many."""
    last = events[-1]
    return GenerationEvent(
        request_id=last.request_id,
        text="".join(e.text for e in events),
        token_ids=tuple(t for e in events for t in e.token_ids),
        logprobs=tuple(lp for e in events for lp in e.logprobs),
        finish_reason=last.finish_reason,
        usage=last.usage,
        error=last.error,
        stop_sequence=last.stop_sequence,
        reasoning="".join(e.reasoning for e in events),
        tool_calls=tuple(call for e in events for call in e.tool_calls),
        tool_call_deltas=tuple(d for e in events for d in e.tool_call_deltas),
        timings=last.timings,
    )

"""What a request's fields may ask for: the field policy of each dialect, as data.

Clients set fields that only hint at how a hosted API should run a request (a service tier, a
cache key, a verbosity); a local server that refused them would break clients for nothing.
Other fields ask for a capability this server does not have (audio output, web search); those
must fail loudly, naming the field. So every field a request sets is one of:

- **declared** by the wire schema and acted on;
- a **hint**: accepted, not acted on, and named in the ``x-mlx-manager-ignored-fields``
  response header (a hint the schema declares is still validated; one it does not is dropped
  before validation);
- a **capability** the server lacks: a 400 ``unsupported_parameter`` naming the field and
  what it asks for (some are hints for harmless values: ``modalities: ["text"]``);
- anything else is unknown: the schemas' ``extra="forbid"`` 400 names it.

A null value sets nothing: it is neither reported nor refused.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    PrivateAttr,
    model_validator,
)
from pydantic_core import PydanticCustomError

IGNORED_FIELDS_HEADER = "x-mlx-manager-ignored-fields"
# pydantic error type of a refused capability; api/errors.py turns it into a 400.
UNSUPPORTED_CAPABILITY = "unsupported_capability"


def _text_only(value: Any) -> bool:
    return isinstance(value, list) and all(v == "text" for v in value)


@dataclass(frozen=True, slots=True)
class FieldPolicy:
    """Hints and refused capabilities of one wire object (see the module docstring)."""

    hints: frozenset[str] = frozenset()
    capabilities: Mapping[str, str] = field(default_factory=dict)  # field -> what it asks for
    # A capability field is a hint when its value asks for nothing missing.
    harmless: Mapping[str, Callable[[Any], bool]] = field(default_factory=dict)

    def split(
        self, data: Mapping[str, Any], declared: Collection[str]
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """`data` without the hints the schema does not declare, and the hints set.

        Raises pydantic's error `unsupported_capability` for a capability the server lacks.
        """
        kept: dict[str, Any] = {}
        ignored: list[str] = []
        for name, value in data.items():
            if value is not None and name in self.capabilities:
                harmless = self.harmless.get(name)
                if harmless is None or not harmless(value):
                    raise capability_error(name, self.capabilities[name])
            if name in self.hints and value is not None:
                ignored.append(name)
            if name in declared or (name not in self.hints and name not in self.capabilities):
                kept[name] = value
        return kept, tuple(ignored)


def capability_error(name: str, capability: str, advice: str = "") -> PydanticCustomError:
    """The validation error for field `name` asking for `capability` (`advice`: what to send
    instead)."""
    return PydanticCustomError(
        UNSUPPORTED_CAPABILITY,
        "asks for {capability}, which this server does not provide"
        + ("; {advice}" if advice else ""),
        {"field": name, "capability": capability, "advice": advice},
    )


class PolicedModel(BaseModel):
    """A strict wire object that applies its `field_policy` before validation and remembers
    the hints it was sent (`ignored_fields()`)."""

    model_config = ConfigDict(extra="forbid")
    field_policy: ClassVar[FieldPolicy] = FieldPolicy()
    _ignored: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _apply_field_policy(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        if not isinstance(data, Mapping):
            return handler(data)
        declared = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
        kept, ignored = cls.field_policy.split(data, declared)
        model = handler(kept)
        model._ignored = ignored
        return model

    def ignored_fields(self) -> tuple[str, ...]:
        """The hints this object was sent, as parameter names."""
        return self._ignored


def ignored_header(names: Iterable[str]) -> dict[str, str]:
    """The response header naming the ignored fields (none when nothing was ignored)."""
    unique = list(dict.fromkeys(names))
    return {IGNORED_FIELDS_HEADER: ",".join(unique)} if unique else {}


# --- OpenAI ------------------------------------------------------------------------------

# Who the caller is, how a hosted API should store, cache, bill or word a reply.
_OPENAI_COMMON_HINTS = frozenset({"user", "metadata", "store", "service_tier"})

OPENAI_CHAT = FieldPolicy(
    hints=_OPENAI_COMMON_HINTS
    | {
        "verbosity",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "modalities",
    },
    capabilities={
        "audio": "audio output",
        "modalities": "audio output",
        "web_search_options": "web search",
        "prediction": "predicted outputs",
        "functions": "legacy function calling (tools replace it)",
        "function_call": "legacy function calling (tool_choice replaces it)",
    },
    harmless={"modalities": _text_only},
)
OPENAI_COMPLETION = FieldPolicy(hints=_OPENAI_COMMON_HINTS)

# --- Anthropic ---------------------------------------------------------------------------

ANTHROPIC_MESSAGES = FieldPolicy(
    hints=frozenset({"metadata", "service_tier", "speed", "inference_geo", "diagnostics"}),
    capabilities={
        "mcp_servers": "MCP servers (the MCP connector)",
        "container": "a code execution container",
    },
)
# Tool options for Anthropic's hosted tool runtime: schema-strict inputs, eager (fine-grained)
# input streaming, tool search (defer_loading), examples of inputs. A tool's `cache_control`
# is declared: prefix caching is automatic here, so it is honoured, not ignored.
ANTHROPIC_TOOL = FieldPolicy(
    hints=frozenset({"strict", "eager_input_streaming", "defer_loading", "input_examples"})
)
# context_management edits: thinking is never replayed into the prompt, so clearing it is a
# no-op; tool-use clearing is accepted and reported as not applied (see README).
UNAPPLIED_CONTEXT_EDITS = frozenset({"clear_tool_uses_20250919"})

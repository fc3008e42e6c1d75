"""Chat-family adapters: how a model family renders a chat and which tokens end a turn.

The model's own chat template always wins; a family adds the end-of-turn tokens to stop on, the
system-role policy, and a template for tokenizers that ship none. Decisions:

- **No double BOS.** Templates of BOS families write BOS themselves (``{{ bos_token }}``), so the
  rendered text is encoded with ``add_special_tokens=False``, as transformers'
  ``apply_chat_template(tokenize=True)`` and mlx-lm's server do.
- **System role.** ``system_role=False`` (Gemma 1/2) folds system text into the next user turn
  as ``"{system}\n\n{user}"``. Other families try the template as is and fold only if it raises
  on a chat with a system turn (Mistral-Instruct v0.1/v0.2); templates that accept a system
  role (Mistral v0.3+) keep it. A system turn later in the chat (Claude Code sends one) is
  rendered in place where the template allows it; a template that accepts only a leading
  system turn keeps that one and gets the later ones folded into the next user turn.
- **Stops.** EOS ids, the family's end-of-turn tokens, and any unambiguous end-of-turn marker
  written in the chat template: SmolLM2 (model_type llama, ChatML template) stops on
  ``<|im_end|>``. ``<|end|>`` is not scanned for: gpt-oss writes it between channels of a reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# End-of-turn markers that mean "stop" wherever a chat template writes them.
TEMPLATE_STOP_MARKERS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<end_of_turn>",
    "<end_of_utterance>",  # Idefics3 / SmolVLM
)


@dataclass(frozen=True, slots=True)
class ChatFamily:
    """A model family's chat conventions (see the module docstring for the policies)."""

    name: str
    stop_strings: tuple[str, ...]
    system_role: bool = True
    default_template: str | None = None

    def stop_token_ids(self, tokenizer: Any) -> frozenset[int]:
        """EOS ids plus the ids of this family's (and the template's) end-of-turn tokens.

        ``tokenizer`` is mlx-lm's TokenizerWrapper (a bare transformers tokenizer works too).
        Strings that are not a single token of the vocabulary are skipped.
        """
        eos = getattr(tokenizer, "eos_token_ids", None)
        if eos is None:
            eos = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
        template = _template_text(tokenizer) or self.fallback_template
        wanted = set(self.stop_strings)
        wanted.update(marker for marker in TEMPLATE_STOP_MARKERS if marker in template)
        vocab: dict[str, int] = tokenizer.get_vocab()
        ids = {int(i) for i in eos} | {vocab[s] for s in wanted if s in vocab}
        return frozenset(ids)

    def prepare_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Map developer to system, merge consecutive system turns, fold if no system role.

        Returns new dicts; the input is never mutated.
        """
        merged: list[dict[str, Any]] = []
        for message in messages:
            msg = dict(message)
            if msg.get("role") == "developer":
                msg["role"] = "system"
            if msg.get("role") == "system":
                msg["content"] = content_text(msg.get("content"))
                if merged and merged[-1].get("role") == "system":
                    merged[-1]["content"] += "\n\n" + msg["content"]
                    continue
            merged.append(msg)
        return merged if self.system_role else fold_system_messages(merged)

    def render_prompt(
        self,
        tokenizer: Any,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        """Render ``messages`` with the chat template and return the prompt's token ids.

        ``tools`` (OpenAI function-tool dicts) go to templates that render tools themselves.
        """
        text = self.render_text(
            tokenizer, messages, add_generation_prompt=add_generation_prompt, tools=tools
        )
        # The template wrote any BOS itself: adding special tokens here would double it.
        return list(tokenizer.encode(text, add_special_tokens=False))

    def render_text(
        self,
        tokenizer: Any,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
        content_parts: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """The chat template's text for ``messages`` (vision processors tokenize it).

        ``content_parts``: give the template every content as a list of parts (vision
        templates iterate over parts to place their image tokens). ``extra``: more template
        variables (a client's chat_template_kwargs).
        """
        prepared = self.prepare_messages(messages)
        args = (add_generation_prompt, tools, content_parts, extra)
        try:
            return self._render(tokenizer, prepared, *args)
        except TemplateError:
            if not any(m.get("role") == "system" for m in prepared):
                raise
        leading, rest = prepared[0], prepared[1:]
        if leading.get("role") == "system" and any(m.get("role") == "system" for m in rest):
            try:  # a template that takes a system turn only first (Llama 2, Mistral v0.3)
                return self._render(tokenizer, [leading, *fold_system_messages(rest)], *args)
            except TemplateError:
                pass
        return self._render(tokenizer, fold_system_messages(prepared), *args)

    @property
    def fallback_template(self) -> str:
        """The template used when the tokenizer has none."""
        return self.default_template or CHATML_TEMPLATE

    def _render(
        self,
        tokenizer: Any,
        messages: list[dict[str, Any]],
        generation: bool,
        tools: list[dict[str, Any]] | None = None,
        content_parts: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        if content_parts:
            messages = [{**m, "content": as_parts(m.get("content"))} for m in messages]
        kwargs: dict[str, Any] = {**(extra or {}), **({"tools": tools} if tools else {})}
        # has_chat_template: mlx-lm's wrapper also counts its own renderers (chat_template_type).
        if tokenizer.chat_template is None and not getattr(tokenizer, "has_chat_template", False):
            kwargs["chat_template"] = self.fallback_template
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation, **kwargs
        )
        return str(text)


def content_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def as_parts(content: Any) -> list[dict[str, Any]]:
    """A message content as a list of parts (a string becomes one text part)."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def fold_system_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold each run of system text into the next user turn (``"{system}\\n\\n{user}"``).

    System text with no user turn after it becomes a user turn of its own.
    """
    out: list[dict[str, Any]] = []
    pending: list[str] = []
    for msg in messages:
        if msg.get("role") == "system":
            pending.append(content_text(msg.get("content")))
            continue
        if msg.get("role") == "user" and pending:
            msg = {**msg, "content": _prefix("\n\n".join(pending), msg.get("content"))}
            pending = []
        out.append(msg)
    if pending:
        out.append({"role": "user", "content": "\n\n".join(pending)})
    return out


def _prefix(system: str, content: Any) -> Any:
    if isinstance(content, list):
        return [{"type": "text", "text": system + "\n\n"}, *content]
    user = content_text(content)
    return f"{system}\n\n{user}" if user else system


def _template_text(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates ("default", "tool_use", ...)
        return "\n".join(str(t) for t in template.values())
    return template if isinstance(template, str) else ""


CHATML = ChatFamily("chatml", ("<|im_end|>",), default_template=CHATML_TEMPLATE)
FAMILIES: dict[str, ChatFamily] = {
    "llama": ChatFamily(
        "llama",
        ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "</s>"),
        default_template=LLAMA3_TEMPLATE,
    ),
    "qwen": ChatFamily("qwen", ("<|im_end|>", "<|endoftext|>"), default_template=CHATML_TEMPLATE),
    "mistral": ChatFamily("mistral", ("</s>",), default_template=MISTRAL_TEMPLATE),
    "gemma": ChatFamily(
        "gemma", ("<end_of_turn>", "<eos>"), system_role=False, default_template=GEMMA_TEMPLATE
    ),
    "phi3": ChatFamily("phi3", ("<|end|>", "<|endoftext|>"), default_template=PHI3_TEMPLATE),
    "chatml": CHATML,
}

# model_type (or architecture name) prefix -> family; first match wins, so longer prefixes first.
_TYPE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("llama", "llama"),
    ("qwen", "qwen"),
    ("mistral", "mistral"),
    ("mixtral", "mistral"),
    ("ministral", "mistral"),
    ("gemma4", "chatml"),  # a different turn format that accepts a system role; no adapter yet
    ("gemma", "gemma"),
    ("recurrent_gemma", "gemma"),
    ("phi3", "phi3"),
    ("phimoe", "phi3"),
)
# Substrings of a model name (lower case) -> family, for configs that say nothing useful.
_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    ("qwen", "qwen"),
    ("llama", "llama"),
    ("mistral", "mistral"),
    ("mixtral", "mistral"),
    ("ministral", "mistral"),
    ("gemma", "gemma"),
    ("phi-3", "phi3"),
    ("phi3", "phi3"),
    ("phi-4", "phi3"),
    ("phi4", "phi3"),
)


def _by_prefix(key: str) -> ChatFamily | None:
    key = key.lower()
    for prefix, family in _TYPE_PREFIXES:
        if key.startswith(prefix):
            return FAMILIES[family]
    return None


def detect_family(config: dict[str, Any], model_name: str = "") -> ChatFamily:
    """The family of a model: config ``model_type``, then ``architectures[0]``, then name.

    Falls back to the generic ChatML family when nothing matches.
    """
    model_type = config.get("model_type")
    if isinstance(model_type, str) and (family := _by_prefix(model_type)):
        return family
    architectures = config.get("architectures") or [None]
    if isinstance(architectures[0], str) and (family := _by_prefix(architectures[0])):
        return family
    name = model_name.lower()
    for pattern, family_name in _NAME_PATTERNS:
        if pattern in name:
            return FAMILIES[family_name]
    return CHATML
